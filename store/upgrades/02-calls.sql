-- v2: Call legs

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
