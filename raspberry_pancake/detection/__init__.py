"""Detection: the user's ``detect()`` (``loader``), the thread that calls it
(``thread``) with RGB pictures from the camera (``slot``), and the edges its answers
make (``edges``), which the detection recorders and the emitter take.
"""
