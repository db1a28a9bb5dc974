"""A pymodbus TCP server with many units, for citygate's Modbus pipeline benchmark.

Serves UNITS unit ids (1..UNITS) on one TCP port, each with REGISTERS holding registers
(wire address w holds w), so that a gateway can poll UNITS devices behind one address.
Usage: modbus_sim.py PORT UNITS REGISTERS
"""

import asyncio
import logging
import sys

from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.server import StartAsyncTcpServer


async def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    port, units, registers = int(argv[1]), int(argv[2]), int(argv[3])
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    # pymodbus maps wire address a to block index a + 1: the block starts at 1.
    devices = {
        u: ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, list(range(registers))))
        for u in range(1, units + 1)
    }
    ctx = ModbusServerContext(devices=devices, single=False)
    print("READY", flush=True)
    await StartAsyncTcpServer(ctx, address=("127.0.0.1", port))


if __name__ == "__main__":
    asyncio.run(main(sys.argv))
