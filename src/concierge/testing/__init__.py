"""Public test helpers: fake nodes, a fake clock, an in-thread node context, harnesses.

They ship in the package because child processes resolve fake ``entry`` names in a fresh
interpreter: a fake must be importable from the installed package.
"""
