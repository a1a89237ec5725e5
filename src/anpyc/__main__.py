from anpyc.cli import entry

entry()
