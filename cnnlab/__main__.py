from cnnlab.cli import run

run()
