"""An independent Modbus peer for citygate's end-to-end tests, built on pymodbus.

Serves one register image to every unit id given, over TCP or RTU:
  holding register w  = 1000 + w   for w in 0..199   (so wire address w reads 1000 + w)
  input register w    = 2000 + w
  coil b / discrete b = b % 3 == 0
  holding 100..101    = f32 21.5 in ABCD order (0x41AC, 0x0000)
  holding 195..199    = the text "CITYGATE-7", two ASCII bytes a register, high byte first;
                        the last registers of the block, so that reading one more is refused
                        (exception 02, illegal data address)
Usage:
  modbus_peer.py tcp PORT
  modbus_peer.py rtu SERIAL_PATH UNIT[,UNIT...]
"""

import asyncio
import logging
import sys

from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.server import StartAsyncSerialServer, StartAsyncTcpServer


def device():
    hr = [1000 + w for w in range(200)]
    hr[100] = 0x41AC
    hr[101] = 0x0000
    text = b"CITYGATE-7"
    for i in range(5):
        hr[195 + i] = text[2 * i] << 8 | text[2 * i + 1]
    ir = [2000 + w for w in range(200)]
    bits = [b % 3 == 0 for b in range(200)]
    # pymodbus' device context maps wire address a to block index a + 1, so the blocks start
    # at 1 to make wire address 0 the first value.
    return ModbusDeviceContext(
        hr=ModbusSequentialDataBlock(1, hr),
        ir=ModbusSequentialDataBlock(1, ir),
        co=ModbusSequentialDataBlock(1, bits),
        di=ModbusSequentialDataBlock(1, list(bits)),
    )


async def main(argv):
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    if len(argv) >= 3 and argv[1] == "tcp":
        ctx = ModbusServerContext(devices={1: device(), 0xFF: device()}, single=False)
        print("READY", flush=True)
        await StartAsyncTcpServer(ctx, address=("127.0.0.1", int(argv[2])))
    elif len(argv) >= 4 and argv[1] == "rtu":
        units = [int(u) for u in argv[3].split(",")]
        ctx = ModbusServerContext(devices={u: device() for u in units}, single=False)
        print("READY", flush=True)
        await StartAsyncSerialServer(
            ctx, port=argv[2], baudrate=19200, ignore_missing_devices=True
        )
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    asyncio.run(main(sys.argv))
