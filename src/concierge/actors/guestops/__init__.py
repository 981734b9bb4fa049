"""Guest operations actor: files, exec, passwords and SSH keys under a policy with an audit trail.

Its own OS process so that a runaway child or a huge file read never touches the other actors.
"""
