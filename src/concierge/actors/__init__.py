"""Actor processes: each subpackage is one supervised component (entry = "module:Class").

Nothing here is imported eagerly: a child process imports only its own node module.
"""
