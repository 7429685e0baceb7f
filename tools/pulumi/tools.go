//go:build tools

// Package tools pins the Pulumi CLI that scripts/setup builds when no new-enough `pulumi` is
// installed. pkg and sdk must be required at the same tag: the version stamp lives in sdk.
package tools

import (
	_ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
	_ "github.com/pulumi/pulumi/sdk/v3/go/common/version"
)
