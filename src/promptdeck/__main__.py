from promptdeck.cli import main

main()
