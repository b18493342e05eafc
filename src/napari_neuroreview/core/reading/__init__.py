"""Reading aids: what a neuroradiologist sets up before reading a scan (no Qt, no napari).

``window``: window/level presets per modality (SWI magnitude, SWI phase, T1, FLAIR, auto)
computed from the volume; ``minip``: the minimum-intensity projection slab read with SWI.
"""
