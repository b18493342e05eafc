"""The case report: one self-contained HTML page (and a PDF of it) of a reviewed scan.

``content`` gathers what the store, the scan and the optional subtype / networks results
say; ``key_images`` renders each microbleed's crops; ``html`` writes the page; ``browser``
runs headless Chromium (PDF, screenshot); ``write`` is the one task the CLI and the Case
widget's Report button both run.
"""
