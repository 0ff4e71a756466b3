"""KEK rotation: re-wrap data keys under the current KEK; the data are not touched."""

from __future__ import annotations

from collections.abc import Iterable

from dossier.crypto.interfaces import KeyProvider, WrappedKey


def rewrap_all(provider: KeyProvider, keys: Iterable[WrappedKey], *,
               source: KeyProvider | None = None) -> list[WrappedKey]:
    """Each key re-wrapped under ``provider``'s current KEK, in the order given.

    Keys already under the current KEK come back unchanged. ``source`` unwraps
    instead of ``provider`` when moving between providers (local file → HSM).
    Raises KeyUnavailable / DecryptionError on the first key it cannot unwrap,
    before the caller has written anything.
    """
    current = provider.current_kek_id()
    reader = source or provider
    result = []
    for key in keys:
        if source is None and key.kek_id == current:
            result.append(key)
            continue
        kek_id, wrapped = provider.wrap(reader.unwrap(key.kek_id, key.wrapped))
        result.append(WrappedKey(kek_id, wrapped))
    return result
