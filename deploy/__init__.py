"""gemsight deploy: signed model bundles, crash-safe flashing with rollback, on-device engine build.

``gemsight-deploy`` (:mod:`deploy.cli`) is the command; the pieces:

* :mod:`deploy.keys`: ed25519 key pairs and the keys a device trusts;
* :mod:`deploy.bundle`: the canonical, signed ``.gsb`` tar and :func:`~deploy.bundle.create_bundle`;
* :mod:`deploy.verify`: :func:`~deploy.verify.verify_bundle` (before anything is touched),
  extraction of what was verified, :func:`~deploy.verify.verify_installed`;
* :mod:`deploy.layout`: the device root, ``current``/``previous`` links, journal, lock, history;
* :mod:`deploy.flash`: :func:`~deploy.flash.flash`, :func:`~deploy.flash.recover` and the kill checkpoints;
* :mod:`deploy.manage`: ``rollback``, ``status``, ``build-engine``;
* :mod:`deploy.rollout`: ``rollout`` over a fleet's device roots in waves (canary first, halt, resume);
* :mod:`deploy.engine` (TensorRT engine, smoke inference), :mod:`deploy.health` (systemd restart,
  heartbeat), :mod:`deploy.install` (user, directories, config, units), :mod:`deploy.remote` (``--ssh``).
"""
