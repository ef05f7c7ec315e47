"""Call legs: one side of a call each (SIP dialogs, or local pairs for applications)."""
