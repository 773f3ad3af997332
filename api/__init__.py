"""The aiohttp application: reads, uploads, beacons."""
