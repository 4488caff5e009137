-- v0 -> v7: Latest revision

-- The bot's own Matrix login. One row: a second user in the same database is
-- refused, because the crypto store next to it belongs to this device.
CREATE TABLE account (
    user_id      TEXT    PRIMARY KEY,
    device_id    TEXT    NOT NULL,
    access_token TEXT    NOT NULL,
    homeserver   TEXT    NOT NULL,
    logged_in_at INTEGER NOT NULL
);

-- Where the /sync stream resumes. Written in the same transaction as the
-- events it delivered (event_inbox), so a restart neither replays nor skips.
CREATE TABLE sync_state (
    user_id    TEXT    PRIMARY KEY,
    next_batch TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Events taken in from /sync or an appservice transaction and not yet handled.
-- Rows are handled in seq order per queue (a room ID, or '' for to-device
-- events) and deleted once handled. Encrypted events are kept encrypted and
-- decrypted by the queue's worker, so their order is kept too.
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

-- Appservice transactions already taken in (the homeserver retries a
-- transaction until it is acknowledged; a retry must not be handled twice).
CREATE TABLE appservice_txn (
    txn_id      TEXT    PRIMARY KEY,
    received_at INTEGER NOT NULL
);

-- Rooms the bot has been invited to or joined, and their per-room settings.
CREATE TABLE room (
    room_id    TEXT    PRIMARY KEY,
    membership TEXT    NOT NULL CHECK (membership IN ('invite', 'join', 'leave', 'ban')),
    inviter    TEXT    NOT NULL DEFAULT '',
    updated_at INTEGER NOT NULL,
    settings   TEXT    NOT NULL DEFAULT '{}'
);

-- One row per call leg between the bot and one peer party.
CREATE TABLE call (
    room_id         TEXT    NOT NULL,
    call_id         TEXT    NOT NULL,
    our_party_id    TEXT    NOT NULL,
    peer_user_id    TEXT    NOT NULL,
    peer_party_id   TEXT    NOT NULL DEFAULT '',
    peer_device_id  TEXT    NOT NULL DEFAULT '',
    direction       TEXT    NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    version         TEXT    NOT NULL DEFAULT '1',
    video           INTEGER NOT NULL DEFAULT 0,
    state           TEXT    NOT NULL,
    state_reason    TEXT    NOT NULL DEFAULT '',
    hangup_reason   TEXT    NOT NULL DEFAULT '',
    hangup_by       TEXT    NOT NULL DEFAULT '' CHECK (hangup_by IN ('', 'local', 'remote')),
    missed          INTEGER NOT NULL DEFAULT 0,
    invite_event_id TEXT    NOT NULL DEFAULT '',
    lifetime_ms     INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    answered_at     INTEGER,
    connected_at    INTEGER,
    ended_at        INTEGER,
    PRIMARY KEY (room_id, call_id),
    FOREIGN KEY (room_id) REFERENCES room (room_id) ON DELETE CASCADE
);
CREATE INDEX call_active_idx ON call (state) WHERE state <> 'ended';

-- The bot's DHT node (one row): its id, its Jami account (the account
-- archive, as Jami exports it) and its device (key and certificate chain,
-- the SecureDht identity it signs and decrypts with), so that a restart is
-- the same node and the same Jami account to the network.
CREATE TABLE dht_node (
    singleton       INTEGER PRIMARY KEY CHECK (singleton = 1),
    node_id         BLOB    NOT NULL,
    account_archive BLOB    NOT NULL,
    key_pem         TEXT    NOT NULL,
    cert_pem        TEXT    NOT NULL
);

-- Values the bot keeps on the DHT (permanent puts), to announce again
-- after a restart.
CREATE TABLE dht_value (
    hash     BLOB    NOT NULL,
    value_id INTEGER NOT NULL,
    packed   BLOB    NOT NULL,
    PRIMARY KEY (hash, value_id)
);

-- Nodes that answered lately: a fast bootstrap after a restart.
CREATE TABLE dht_peer (
    address   TEXT    PRIMARY KEY,
    node_id   BLOB    NOT NULL,
    last_seen INTEGER NOT NULL
);

-- One conversation: the legs it joins and the media forwarded between them.
CREATE TABLE bridge (
    bridge_id    TEXT    PRIMARY KEY,
    -- The room whose call or command started it ('' if none).
    room_id      TEXT    NOT NULL,
    -- Where it rings, as a route target (kind:address), '' for none.
    target       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    ended_at     INTEGER,
    end_reason   TEXT    NOT NULL DEFAULT ''
);

-- A leg of a bridge: one party (a Matrix call, the bot's own source, …).
-- kind says which; a Matrix leg's call is the call row of the same call ID.
CREATE TABLE bridge_leg (
    leg_id       TEXT    PRIMARY KEY,
    bridge_id    TEXT    NOT NULL REFERENCES bridge (bridge_id) ON DELETE CASCADE,
    kind         TEXT    NOT NULL,
    direction    TEXT    NOT NULL,
    peer         TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    answered_at  INTEGER,
    ended_at     INTEGER,
    end_reason   TEXT    NOT NULL DEFAULT '',
    ended_by     TEXT    NOT NULL DEFAULT '',
    end_detail   TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX bridge_leg_bridge ON bridge_leg (bridge_id);
CREATE INDEX bridge_active ON bridge (bridge_id) WHERE ended_at IS NULL;

-- A Jami account the bot has as a contact (jami.Contact): one whose trust
-- request the bot accepted, or one the bot invited (confirmed = 0 until it
-- accepts). conversation_id is the 1:1 swarm the contact's Jami made ('' for
-- none); added is in ms since 1970.
CREATE TABLE jami_contact (
    account         TEXT    PRIMARY KEY,
    conversation_id TEXT    NOT NULL DEFAULT '',
    added           INTEGER NOT NULL,
    confirmed       INTEGER NOT NULL DEFAULT 0 CHECK (confirmed IN (0, 1))
);

-- A call link (bridge/guestlink): a guest who opens <public base>/call/<token>
-- joins the call of room_id. The token is never kept, only token_hash, the
-- hex SHA-256 of it; id, the link's public id, is the first 10 digits of
-- token_hash. Times are in ms since 1970; revoked_at is NULL until revoked.
-- kind is what the token opens: 'call' (/call/<token>), 'whip' (/whip,
-- media pushed in), 'whep' (/whep, the call pulled out). It is written as
-- the v7 upgrade adds it, so that both paths give the same schema text.
CREATE TABLE guest_link (
    id         TEXT    PRIMARY KEY,
    token_hash TEXT    NOT NULL UNIQUE,
    room_id    TEXT    NOT NULL,
    video      INTEGER NOT NULL DEFAULT 0 CHECK (video IN (0, 1)),
    echo       INTEGER NOT NULL DEFAULT 0 CHECK (echo IN (0, 1)),
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    joins      INTEGER NOT NULL DEFAULT 0
    , kind TEXT NOT NULL DEFAULT 'call' CHECK (kind IN ('call', 'whip', 'whep')));
CREATE INDEX guest_link_room_idx ON guest_link (room_id, created_at);
