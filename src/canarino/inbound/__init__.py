"""Doors for live contacts with canaries: the SMTP listener, mailbox polling, webhooks."""
