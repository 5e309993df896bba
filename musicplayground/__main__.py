from musicplayground.cli import main

main()
