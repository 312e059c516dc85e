from onefold.interfaces.cli import main

main()
