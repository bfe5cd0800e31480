"""Started by Python in a child process that has this directory on its PYTHONPATH.

With FAKE_PI_PLATFORM set (vc4 or pisp), the process becomes that Raspberry Pi
for the real Picamera2 before anything imports it (see tests/fakes/fake_pi).
"""

import os

if os.environ.get("FAKE_PI_PLATFORM"):
    import fake_pi

    fake_pi.install(os.environ["FAKE_PI_PLATFORM"])
