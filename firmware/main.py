# Entry point on the board: MicroPython runs main.py after boot.py at every reset.
import node

node.main()
