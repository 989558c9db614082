"""The PC sync client: ``anywhere drive login`` and ``anywhere drive sync LOCAL_DIR
FOLDER [--watch]`` — a two-way, three-way sync of a local folder with a drive folder."""
