"""Hardware simulator for access-gateway: MJPEG cameras, OSDP readers, doors, scenarios.

Independent of the ``gateway`` package: the daemon sees it exactly like real hardware
(camera URLs, OSDP over TCP). Start everything in-process with::

    from hw_sim import Simulator, SimConfig
    sim = Simulator(SimConfig.demo()).start()
    sim.camera_url("main-cam"); sim.reader_url("entry"); sim.api_url
    sim.stop()
"""

from hw_sim.config import SimConfig
from hw_sim.sim import Simulator

__all__ = ["SimConfig", "Simulator"]
