"""The run loops behind the entry points: experiment folders, training, testing, command line."""
