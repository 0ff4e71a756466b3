"""Small typed stores for the side tables (export jobs, subscriptions, rosters, …).

A store is built on the unit's own session by `Repository.store(Kind)`; routes and
operations use its methods and never a session. Background workers build them on
`Runtime.system_session()`."""
