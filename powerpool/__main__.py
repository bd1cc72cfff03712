from powerpool.cli import main

main()
