"""picamera2.outputs.Output as documented in Picamera2 0.3: encoders accept only its subclasses."""


class Output:
    """Base of everything an encoder writes to; ``outputframe`` runs on the encoder's thread."""

    def __init__(self, pts=None):
        self.recording = False
        self.ptsoutput = pts
        self.needs_pacing = False

    def start(self):
        self.recording = True

    def stop(self):
        self.recording = False

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
        """Receive one encoded frame (bytes); timestamp in microseconds."""

    def _add_stream(self, encoder_stream, *args, **kwargs):
        """Told what kind of stream an encoder produces before it starts."""
