-- The schema at v1 (before call legs), for the upgrade-path test.

CREATE TABLE account (
    user_id      TEXT    PRIMARY KEY,
    device_id    TEXT    NOT NULL,
    access_token TEXT    NOT NULL,
    homeserver   TEXT    NOT NULL,
    logged_in_at INTEGER NOT NULL
);

CREATE TABLE sync_state (
    user_id    TEXT    PRIMARY KEY,
    next_batch TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE event_inbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    queue       TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    source      INTEGER NOT NULL,
    event       TEXT    NOT NULL,
    -- For an encrypted to-device event: the sending device Olm proved.
    sender_device TEXT  NOT NULL DEFAULT '',
    -- The event was decrypted before it was stored (to-device events: Olm
    -- decryption cannot be repeated).
    decrypted   INTEGER NOT NULL DEFAULT 0,
    received_at INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX event_inbox_queue_idx ON event_inbox (queue, seq);

CREATE TABLE appservice_txn (
    txn_id      TEXT    PRIMARY KEY,
    received_at INTEGER NOT NULL
);

CREATE TABLE room (
    room_id    TEXT    PRIMARY KEY,
    membership TEXT    NOT NULL CHECK (membership IN ('invite', 'join', 'leave', 'ban')),
    inviter    TEXT    NOT NULL DEFAULT '',
    updated_at INTEGER NOT NULL,
    settings   TEXT    NOT NULL DEFAULT '{}'
);
