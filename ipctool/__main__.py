from ipctool.cli import main

main()
