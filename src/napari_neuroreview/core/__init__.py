"""napari-free, Qt-free numerics and I/O of napari-neuroreview.

Nothing below this package imports Qt, napari or magicgui (a test enforces it), so the
CLI, batch jobs and tests use exactly the code that the widgets call.
"""
