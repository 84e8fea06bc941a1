from personae.entry import main

main()
