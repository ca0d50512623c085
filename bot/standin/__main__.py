from bot.standin.telegram import main

main()
