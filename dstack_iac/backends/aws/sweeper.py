"""AWS resources tagged by runs, found through the Resource Groups Tagging API, per region."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from dstack_iac.model.backend import Orphan

RUN_TAG = "dstack-iac:run"
# ARN resource kinds a run creates, and their Pulumi types (deletion order: instances first).
ARN_TYPES = {
    "instance": "aws:ec2/instance:Instance",
    "security-group": "aws:ec2/securityGroup:SecurityGroup",
    "placement-group": "aws:ec2/placementGroup:PlacementGroup",
    "key-pair": "aws:ec2/keyPair:KeyPair",
    "volume": "aws:ebs/volume:Volume",
}
FIRST = ("aws:ec2/instance:Instance",)


def orphan_of(arn: str, tags: dict, region: str, runs_with_stacks: set[str]) -> Orphan | None:
    """The orphan an ARN of the tag search stands for, or None (a live run's, or not ours)."""
    run = tags.get(RUN_TAG)
    if not run or run in runs_with_stacks or ":ec2:" not in arn:
        return None
    kind, _, resource_id = arn.rsplit(":", 1)[-1].partition("/")
    if kind not in ARN_TYPES:
        return None
    return Orphan(backend="aws", run=run, type=ARN_TYPES[kind], id=resource_id, region=region,
                  owner=tags.get("dstack-iac:owner"), expires_at=tags.get("dstack-iac:expires-at"))


def discovery_program(regions: Iterable[str], runs_with_stacks: set[str]):
    """A program that reports, per region, every EC2 resource tagged by a run without a stack."""

    def program(report: Callable[[list], None]) -> None:
        import pulumi
        import pulumi_aws as aws

        for region in regions:
            found = aws.resourcegroupstaggingapi.get_resources_output(region=region,
                                                                      tag_filters=[{"key": RUN_TAG}])

            def collect(mappings, region=region) -> None:
                orphans = [orphan_of(m.resource_arn, dict(m.tags), region, runs_with_stacks) for m in mappings]
                for orphan in (o for o in orphans if o is not None):
                    if orphan.type == ARN_TYPES["key-pair"]:
                        # Key pairs are imported by name; the tag search gives their id.
                        aws.ec2.get_key_pair_output(key_pair_id=orphan.id, region=region).key_name.apply(
                            lambda name, orphan=orphan: report([orphan.model_copy(update={"id": name})]))
                    else:
                        report([orphan])

            found.resource_tag_mapping_lists.apply(collect)
        pulumi.export("regions", list(regions))

    return program


def import_id(orphan: Orphan) -> str:
    """pulumi-aws v7 imports a resource of any region as `id@region`."""
    return f"{orphan.id}@{orphan.region}" if orphan.region else orphan.id
