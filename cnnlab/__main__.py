from cnnlab.cli import console_entry

console_entry()
