"""Coordination (issue 18, SPEC §14): the professional inbox, referrals between
organisations and the discharge protocol. Everything runs inside the request's unit, through
the Repository: consent, audit and the messages are one transaction."""
