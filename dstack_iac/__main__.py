from dstack_iac.cli.app import main

main()
