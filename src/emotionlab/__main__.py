from emotionlab.cli import main

main()
