"""Test helpers shipped with Anywhere: a real Synapse, the bridge as a process, and
matrix-nio clients. Plugin authors get them as pytest fixtures (``anywhere_stack``,
``matrix_user``, ``bot_id``) through the ``pytest11`` entry point."""
