-- v3: DHT node state

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
