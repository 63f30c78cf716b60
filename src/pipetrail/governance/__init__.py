"""Governance: who may do what, proven by signatures; the model registry and promotions.

Everything is a signed ledger event and the state is a fold over them (docs/adr/0019):

* :mod:`~pipetrail.governance.keys`: Ed25519 key pairs and signing messages;
* :mod:`~pipetrail.governance.roles`: the roles table (deny by default);
* :mod:`~pipetrail.governance.identity`: the acting identity, signed event drafts;
* :mod:`~pipetrail.governance.state` and :mod:`~pipetrail.governance.rules`: the fold,
  and the one rule set every event (stored or about to be appended) must meet;
* :mod:`~pipetrail.governance.service`: :class:`Governance`, the actions, each checked
  under the ledger's write lock;
* :mod:`~pipetrail.governance.policy` and :mod:`~pipetrail.governance.checks`: promotion
  policies (``pipetrail.toml``) and the record checks they ask for;
* :mod:`~pipetrail.governance.views`, :mod:`~pipetrail.governance.verify` and
  :mod:`~pipetrail.governance.verified`: what commands show, the audit, and the per-user
  cache of verified events;
* :mod:`~pipetrail.governance.checkpoint` and :mod:`~pipetrail.governance.dsse`: signed
  checkpoints of the ledger's Merkle tree, and signed in-toto envelopes.

Each module imports what it needs lazily: the ``cryptography`` package is loaded only
when a key is made, loaded or checked.
"""
