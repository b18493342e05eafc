"""The model versions a store knows, so that each finding can name the model that made it.

Why a repository of its own: the rule "one name and version is one model card" is checked
here, once, and findings resolve their ``(name, version)`` through :meth:`ModelVersions.id_of`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from napari_neuroreview.core.errors import StoreError
from napari_neuroreview.core.store import audit
from napari_neuroreview.core.store.database import Database
from napari_neuroreview.core.store.records import ModelVersionRecord, _default_actor, _dumps, _now

__all__ = ["ModelVersions"]

#: Card keys that describe the card itself, not the model: a card recorded before they existed is the same model.
_CARD_BOOKKEEPING = ("card_sha256",)


def _card_content(card: Mapping[str, Any]) -> dict[str, Any]:
    """A model card without its own integrity hash (added to cards in schema 3 of the registry).

    Why: a store that recorded the shipped 1.0.0 before cards carried ``card_sha256``
    must still accept the same model; anything else that differs is another model.
    """
    return {k: v for k, v in dict(card).items() if k not in _CARD_BOOKKEEPING}


class ModelVersions:
    """The ``model_versions`` table of one store.

    Parameters
    ----------
    db : Database
        The store's connection.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def register(
        self,
        name: str,
        version: str,
        task: str,
        card: Mapping[str, Any],
        *,
        actor: str | None = None,
    ) -> ModelVersionRecord:
        """Record a model version so that findings can name the model that made them.

        Registering the same (name, version, card) again returns the existing record,
        so a widget may call this before every run. The same name and version with a
        *different* card raises :class:`StoreError`: two different models under one
        label would make every later comparison meaningless.
        """
        actor = actor or _default_actor()
        card_json = _dumps(dict(card), "model card")
        with self._db.transaction() as cur:
            row = cur.execute(
                "SELECT id, task, card FROM model_versions WHERE name = ? AND version = ?",
                (name, version),
            ).fetchone()
            if row is not None:
                if row[1] != task or _card_content(json.loads(row[2])) != _card_content(json.loads(card_json)):
                    raise StoreError(
                        f"The annotation store {self._db.path} already has model {name} "
                        f"version {version} with a different task or model card."
                    )
                model_id = row[0]
            else:
                cur.execute(
                    "INSERT INTO model_versions (name, version, task, card, registered_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (name, version, task, card_json, _now()),
                )
                model_id = cur.lastrowid
                audit.append(
                    cur,
                    actor,
                    "model_version.registered",
                    "model_version",
                    model_id,
                    {"name": name, "version": version, "task": task},
                )
        rows = self._db.read("SELECT * FROM model_versions WHERE id = ?", (model_id,))
        return _model_version(rows[0])

    def all(self, name: str | None = None) -> list[ModelVersionRecord]:
        """Registered model versions (of ``name`` if given), in registration order."""
        if name is None:
            rows = self._db.read("SELECT * FROM model_versions ORDER BY id")
        else:
            rows = self._db.read("SELECT * FROM model_versions WHERE name = ? ORDER BY id", (name,))
        return [_model_version(row) for row in rows]

    def id_of(self, cur: sqlite3.Cursor, model: tuple[str, str], cache: dict[tuple[str, str], int]) -> int:
        """Inside a write transaction: the row id of a registered ``(name, version)``, cached per batch."""
        key = (str(model[0]), str(model[1]))
        if key not in cache:
            row = cur.execute(
                "SELECT id FROM model_versions WHERE name = ? AND version = ?", key
            ).fetchone()
            if row is None:
                raise StoreError(
                    f"The annotation store {self._db.path} has no model {key[0]} version "
                    f"{key[1]}; register the model version before storing its findings."
                )
            cache[key] = row[0]
        return cache[key]


def _model_version(row: sqlite3.Row) -> ModelVersionRecord:
    return ModelVersionRecord(
        id=row["id"],
        name=row["name"],
        version=row["version"],
        task=row["task"],
        card=json.loads(row["card"]),
        registered_at=row["registered_at"],
    )
