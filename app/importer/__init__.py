"""Importing a Slack workspace export into the archive (`python -m app import-export`).

`export` reads the export (ZIP or folder), `convert` turns Slack messages into archived ones,
`writer` stores them in batches, `run` ties them together with a progress bar.
"""
