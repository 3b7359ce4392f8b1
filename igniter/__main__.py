from igniter.cli.main import main

main()
