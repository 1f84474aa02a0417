"""The state database's schema: its migrations, applied under ``PRAGMA user_version``.

The database holds no image and no plaintext biometric, card number or PIN: templates are
AES-GCM ciphertexts under per-person keys, cards are HMACs and PINs are KDF hashes.
"""

from __future__ import annotations

import logging
import sqlite3

from gateway.errors import StorageError
from gateway.store.tx import transaction

log = logging.getLogger(__name__)

# Each entry is one migration script, applied in order inside one transaction.
# Index 0 takes a database from user_version 0 to 1, and so on. Append, never edit,
# once a release has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE people (
        id TEXT PRIMARY KEY,
        display_name TEXT NOT NULL,
        unit TEXT NOT NULL DEFAULT '',
        role TEXT NOT NULL CHECK (role IN ('resident', 'visitor', 'staff')),
        access_group TEXT NOT NULL DEFAULT 'residents',
        valid_from REAL,
        valid_until REAL,
        is_minor INTEGER NOT NULL DEFAULT 0,
        guardian_id TEXT REFERENCES people(id) ON DELETE SET NULL,
        needs_renotice INTEGER NOT NULL DEFAULT 0,
        last_seen_at REAL,
        created_at REAL NOT NULL
    );
    CREATE TABLE consents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        person_id TEXT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
        purpose TEXT NOT NULL DEFAULT 'face_processing',
        status TEXT NOT NULL CHECK (status IN ('granted', 'declined', 'withdrawn')),
        notice_version TEXT NOT NULL,
        notice_sha256 TEXT NOT NULL,
        method TEXT NOT NULL,
        recorded_by TEXT NOT NULL,
        scope TEXT NOT NULL CHECK (scope IN ('device', 'compound')),
        guardian_id TEXT REFERENCES people(id) ON DELETE SET NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX consents_person ON consents(person_id, id);
    CREATE TABLE face_keys (
        person_id TEXT PRIMARY KEY REFERENCES people(id) ON DELETE CASCADE,
        wrapped_key BLOB NOT NULL,
        key_id TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE templates (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        person_id TEXT NOT NULL REFERENCES face_keys(person_id) ON DELETE CASCADE,
        nonce BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        model TEXT NOT NULL,
        quality REAL,
        created_at REAL NOT NULL
    );
    CREATE INDEX templates_person ON templates(person_id);
    CREATE TABLE cards (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        person_id TEXT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
        card_hmac BLOB NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE TABLE pins (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        person_id TEXT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
        pin_hash TEXT NOT NULL,
        pin_index INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('normal', 'duress', 'visitor')),
        expires_at REAL,
        uses_left INTEGER,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE INDEX pins_index ON pins(pin_index);
    CREATE INDEX pins_person ON pins(person_id);
    CREATE TABLE lockouts (
        scope TEXT NOT NULL,
        subject TEXT NOT NULL,
        failures INTEGER NOT NULL,
        locked_until REAL NOT NULL,
        PRIMARY KEY (scope, subject)
    );
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        retain INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE TABLE withdrawal_receipts (
        id TEXT PRIMARY KEY,
        person_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        templates_erased INTEGER NOT NULL,
        ts REAL NOT NULL
    );
    CREATE TABLE access_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        door TEXT NOT NULL,
        method TEXT NOT NULL,
        granted INTEGER NOT NULL,
        reason TEXT NOT NULL,
        person_id TEXT
    );
    CREATE INDEX access_log_ts ON access_log(ts);
    CREATE TABLE command_nonces (
        nonce TEXT PRIMARY KEY,
        ts REAL NOT NULL
    );
    CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 2: a withdrawal is announced (event + fan-out to the site's gates) from this flag,
    # whichever process recorded it. Earlier versions missed some (a CLI withdrawal on a
    # gate without face path), so every earlier one is announced once more after the
    # upgrade (a repeat erases nothing more); those from other gates are never fanned out.
    """
    ALTER TABLE withdrawal_receipts ADD COLUMN announced INTEGER NOT NULL DEFAULT 0;
    UPDATE withdrawal_receipts SET announced = 1 WHERE channel = 'compound';
    CREATE INDEX withdrawal_receipts_pending ON withdrawal_receipts(announced)
        WHERE announced = 0;
    """,
    # 3 (privacy hardening, issue 18 item 10): the audit chain is keyed per device (rows
    # with key_id NULL are the legacy plain-hash chain, re-anchored by the first keyed row);
    # the access log keeps a keyed pseudonym instead of the person id (old rows are
    # pseudonymised by the daemon's retention job, which has the key); people get a birth
    # month (YYYY-MM) so a minor's guardian consent lapses at 14.
    """
    ALTER TABLE audit ADD COLUMN key_id TEXT;
    ALTER TABLE access_log ADD COLUMN subject TEXT;
    ALTER TABLE people ADD COLUMN birth_month TEXT;
    """,
    # 4 (issue 18 item 3): a credential generation, bumped by triggers on every change to a
    # card, a PIN or the facts a card/PIN decision reads about a person, whoever writes it
    # -- not on the daemon's own bookkeeping (last_seen_at, a visitor PIN's uses_left, a
    # PIN's re-index, lockouts), which its cache already holds. The daemon's cache follower
    # compares it when the database changed: its own event, log and audit writes do not
    # look like a credential change, and a credential change that cannot be loaded is
    # known as one.
    """
    CREATE TABLE credential_generation (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        gen INTEGER NOT NULL
    );
    INSERT INTO credential_generation (id, gen) VALUES (1, 0);
    CREATE TRIGGER credential_generation_cards_insert AFTER INSERT ON cards
    BEGIN UPDATE credential_generation SET gen = gen + 1 WHERE id = 1; END;
    CREATE TRIGGER credential_generation_cards_update AFTER UPDATE ON cards
    BEGIN UPDATE credential_generation SET gen = gen + 1 WHERE id = 1; END;
    CREATE TRIGGER credential_generation_cards_delete AFTER DELETE ON cards
    BEGIN UPDATE credential_generation SET gen = gen + 1 WHERE id = 1; END;
    CREATE TRIGGER credential_generation_pins_insert AFTER INSERT ON pins
    BEGIN UPDATE credential_generation SET gen = gen + 1 WHERE id = 1; END;
    CREATE TRIGGER credential_generation_pins_update
    AFTER UPDATE OF person_id, pin_hash, kind, expires_at, created_at, revoked_at ON pins
    BEGIN UPDATE credential_generation SET gen = gen + 1 WHERE id = 1; END;
    CREATE TRIGGER credential_generation_pins_delete AFTER DELETE ON pins
    BEGIN UPDATE credential_generation SET gen = gen + 1 WHERE id = 1; END;
    CREATE TRIGGER credential_generation_people_insert AFTER INSERT ON people
    BEGIN UPDATE credential_generation SET gen = gen + 1 WHERE id = 1; END;
    CREATE TRIGGER credential_generation_people_delete AFTER DELETE ON people
    BEGIN UPDATE credential_generation SET gen = gen + 1 WHERE id = 1; END;
    CREATE TRIGGER credential_generation_people_update
    AFTER UPDATE OF role, access_group, valid_from, valid_until ON people
    BEGIN UPDATE credential_generation SET gen = gen + 1 WHERE id = 1; END;
    """,
    # the web console's accounts (argon2id hashes) and sessions (SHA-256 of the token only)
    """
    CREATE TABLE web_accounts (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'auditor')),
        password_hash TEXT NOT NULL,
        failures INTEGER NOT NULL DEFAULT 0,
        locked_until REAL,
        created_at REAL NOT NULL
    );
    CREATE TABLE web_sessions (
        token_sha256 TEXT PRIMARY KEY,
        account TEXT NOT NULL REFERENCES web_accounts(name) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_seen REAL NOT NULL
    );
    CREATE INDEX web_sessions_account ON web_sessions(account);
    """,
    # the web console's API tokens for a property-management platform (SHA-256 only)
    """
    CREATE TABLE web_api_tokens (
        id TEXT PRIMARY KEY,
        token_sha256 TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('operator', 'auditor')),
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_used REAL,
        revoked_at REAL
    );
    """,
    # 7 (issue 15): the compound roster. Office: the gates it serves, who may use which
    # gate and to which gates a face goes, the people whose roster entries must be
    # recomputed (filled by triggers, whoever writes: the CLI, the daemon, the web console),
    # what each gate was last sent, the hash-chained change log per gate and each gate's
    # acknowledgement (the triggers fire only where gates are registered: an office).
    # Gate: the roster version applied and which people came from it.
    """
    CREATE TABLE roster_gates (
        name TEXT PRIMARY KEY,
        public_key TEXT NOT NULL,
        added_at REAL NOT NULL
    );
    CREATE TABLE roster_access (
        person_id TEXT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
        gate TEXT NOT NULL,
        PRIMARY KEY (person_id, gate)
    );
    CREATE TABLE roster_face_gates (
        person_id TEXT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
        gate TEXT NOT NULL,
        PRIMARY KEY (person_id, gate)
    );
    CREATE TABLE roster_dirty (person_id TEXT PRIMARY KEY);
    CREATE TABLE roster_sent (
        gate TEXT NOT NULL,
        roster_id TEXT NOT NULL,
        person_id TEXT NOT NULL,
        entry_hash TEXT NOT NULL,
        entry TEXT NOT NULL,
        PRIMARY KEY (gate, roster_id)
    );
    CREATE INDEX roster_sent_person ON roster_sent(person_id);
    CREATE TABLE roster_changes (
        gate TEXT NOT NULL,
        version INTEGER NOT NULL,
        op TEXT NOT NULL CHECK (op IN ('put', 'drop')),
        erasure INTEGER NOT NULL,
        roster_id TEXT NOT NULL,
        sealed TEXT NOT NULL,
        hash TEXT NOT NULL,
        change_id INTEGER NOT NULL,
        created_at REAL NOT NULL,
        chunk INTEGER,
        retained INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (gate, version)
    );
    CREATE INDEX roster_changes_change ON roster_changes(change_id);
    CREATE TABLE roster_acks (
        gate TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        head TEXT NOT NULL,
        applied_at REAL NOT NULL,
        error TEXT,
        received_at REAL NOT NULL
    );
    CREATE TABLE roster_alerts (
        gate TEXT NOT NULL,
        version INTEGER NOT NULL,
        alerted_at REAL NOT NULL,
        PRIMARY KEY (gate, version)
    );
    CREATE TABLE roster_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL,
        head TEXT NOT NULL,
        applied_at REAL NOT NULL
    );
    CREATE TABLE roster_members (
        person_id TEXT PRIMARY KEY REFERENCES people(id) ON DELETE CASCADE,
        face_digest TEXT
    );
    CREATE TRIGGER roster_dirty_people_insert AFTER INSERT ON people
    WHEN EXISTS (SELECT 1 FROM roster_gates)
    BEGIN INSERT OR IGNORE INTO roster_dirty VALUES (NEW.id); END;
    CREATE TRIGGER roster_dirty_people_update AFTER UPDATE OF
        role, access_group, valid_from, valid_until, is_minor, guardian_id, birth_month,
        needs_renotice ON people
    WHEN EXISTS (SELECT 1 FROM roster_gates)
    BEGIN INSERT OR IGNORE INTO roster_dirty VALUES (NEW.id); END;
    CREATE TRIGGER roster_dirty_people_delete AFTER DELETE ON people
    WHEN EXISTS (SELECT 1 FROM roster_gates)
    BEGIN INSERT OR IGNORE INTO roster_dirty VALUES (OLD.id); END;
    CREATE TRIGGER roster_dirty_consents AFTER INSERT ON consents
    WHEN EXISTS (SELECT 1 FROM roster_gates)
    BEGIN INSERT OR IGNORE INTO roster_dirty VALUES (NEW.person_id); END;
    CREATE TRIGGER roster_dirty_face_insert AFTER INSERT ON face_keys
    WHEN EXISTS (SELECT 1 FROM roster_gates)
    BEGIN INSERT OR IGNORE INTO roster_dirty VALUES (NEW.person_id); END;
    CREATE TRIGGER roster_dirty_face_update AFTER UPDATE ON face_keys
    WHEN EXISTS (SELECT 1 FROM roster_gates)
    BEGIN INSERT OR IGNORE INTO roster_dirty VALUES (NEW.person_id); END;
    CREATE TRIGGER roster_dirty_face_delete AFTER DELETE ON face_keys
    WHEN EXISTS (SELECT 1 FROM roster_gates)
    BEGIN INSERT OR IGNORE INTO roster_dirty VALUES (OLD.person_id); END;
    CREATE TRIGGER roster_dirty_templates AFTER INSERT ON templates
    WHEN EXISTS (SELECT 1 FROM roster_gates)
    BEGIN INSERT OR IGNORE INTO roster_dirty VALUES (NEW.person_id); END;
    CREATE TRIGGER roster_dirty_cards_insert AFTER INSERT ON cards
    WHEN EXISTS (SELECT 1 FROM roster_gates)
    BEGIN INSERT OR IGNORE INTO roster_dirty VALUES (NEW.person_id); END;
    CREATE TRIGGER roster_dirty_cards_update AFTER UPDATE ON cards
    WHEN EXISTS (SELECT 1 FROM roster_gates)
    BEGIN INSERT OR IGNORE INTO roster_dirty VALUES (NEW.person_id); END;
    CREATE TRIGGER roster_dirty_cards_delete AFTER DELETE ON cards
    WHEN EXISTS (SELECT 1 FROM roster_gates)
    BEGIN INSERT OR IGNORE INTO roster_dirty VALUES (OLD.person_id); END;
    CREATE TRIGGER roster_dirty_pins_insert AFTER INSERT ON pins
    WHEN EXISTS (SELECT 1 FROM roster_gates)
    BEGIN INSERT OR IGNORE INTO roster_dirty VALUES (NEW.person_id); END;
    CREATE TRIGGER roster_dirty_pins_update AFTER UPDATE OF pin_hash, kind, expires_at,
        revoked_at ON pins
    WHEN EXISTS (SELECT 1 FROM roster_gates)
    BEGIN INSERT OR IGNORE INTO roster_dirty VALUES (NEW.person_id); END;
    CREATE TRIGGER roster_dirty_pins_delete AFTER DELETE ON pins
    WHEN EXISTS (SELECT 1 FROM roster_gates)
    BEGIN INSERT OR IGNORE INTO roster_dirty VALUES (OLD.person_id); END;
    CREATE TRIGGER roster_dirty_access_insert AFTER INSERT ON roster_access
    WHEN EXISTS (SELECT 1 FROM roster_gates)
    BEGIN INSERT OR IGNORE INTO roster_dirty VALUES (NEW.person_id); END;
    CREATE TRIGGER roster_dirty_access_delete AFTER DELETE ON roster_access
    WHEN EXISTS (SELECT 1 FROM roster_gates)
    BEGIN INSERT OR IGNORE INTO roster_dirty VALUES (OLD.person_id); END;
    CREATE TRIGGER roster_dirty_faces_insert AFTER INSERT ON roster_face_gates
    WHEN EXISTS (SELECT 1 FROM roster_gates)
    BEGIN INSERT OR IGNORE INTO roster_dirty VALUES (NEW.person_id); END;
    CREATE TRIGGER roster_dirty_faces_delete AFTER DELETE ON roster_face_gates
    WHEN EXISTS (SELECT 1 FROM roster_gates)
    BEGIN INSERT OR IGNORE INTO roster_dirty VALUES (OLD.person_id); END;
    """,
    # the web console's optional TOTP second factor: the secret sealed under the device
    # key's WEB_TOTP purpose; active once confirmed with a code; the last time step used
    # (a code is never accepted twice)
    """
    CREATE TABLE web_totp (
        account TEXT PRIMARY KEY REFERENCES web_accounts(name) ON DELETE CASCADE,
        secret_sealed BLOB NOT NULL,
        active INTEGER NOT NULL DEFAULT 0,
        last_step INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    """,
    # issue 15: a gate's Ed25519 key that signs its roster acknowledgements (NULL: a gate
    # registered before signed acks; its acks are refused until the key is registered)
    """
    ALTER TABLE roster_gates ADD COLUMN ack_key TEXT;
    """,
    # issue 20: a roster change that carries only keys (a site-key rotation at the office
    # sends one to every gate): op 'keys' (SQLite cannot alter a CHECK: the table is
    # rebuilt); what a gate's ack says of its site key (JSON: id, adopts, why)
    """
    CREATE TABLE roster_changes_v2 (
        gate TEXT NOT NULL,
        version INTEGER NOT NULL,
        op TEXT NOT NULL CHECK (op IN ('put', 'drop', 'keys')),
        erasure INTEGER NOT NULL,
        roster_id TEXT NOT NULL,
        sealed TEXT NOT NULL,
        hash TEXT NOT NULL,
        change_id INTEGER NOT NULL,
        created_at REAL NOT NULL,
        chunk INTEGER,
        retained INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (gate, version)
    );
    INSERT INTO roster_changes_v2 SELECT gate, version, op, erasure, roster_id, sealed, hash,
        change_id, created_at, chunk, retained FROM roster_changes;
    DROP TABLE roster_changes;
    ALTER TABLE roster_changes_v2 RENAME TO roster_changes;
    CREATE INDEX roster_changes_change ON roster_changes(change_id);
    ALTER TABLE roster_acks ADD COLUMN site_key TEXT;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to ``SCHEMA_VERSION`` in one transaction; return the old version."""
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current > SCHEMA_VERSION:
        raise StorageError(
            f"state database schema version {current} is newer than this gateway "
            f"understands ({SCHEMA_VERSION}); upgrade access-gateway or restore a backup"
        )
    if current == SCHEMA_VERSION:
        return current
    with transaction(conn, join=False):
        for version in range(current, SCHEMA_VERSION):
            for statement in _split(MIGRATIONS[version]):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    log.info("state database migrated from schema %d to %d", current, SCHEMA_VERSION)
    return current


def _split(script: str) -> list[str]:
    """Split a migration script into statements (a trigger body's semicolons stay inside
    its statement; no semicolons inside our string literals)."""
    out: list[str] = []
    buf = ""
    for part in script.split(";"):
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n;"):
                out.append(buf.strip())
            buf = ""
    if buf.strip(" \n;"):
        out.append(buf.strip())
    return out
