"""libtorch's NNPACK notice, kept off the terminal.

On CPUs NNPACK does not support, libtorch logs "Could not initialize NNPACK! Reason: Unsupported
hardware." to stderr each time a float32 CPU convolution asks whether NNPACK is available: dozens
of lines per export, in the terminal of ``npm install`` and in the Node CLI's error messages.
Ask once with stderr pointed at /dev/null and, where NNPACK cannot work, switch it off so no
convolution asks again (nothing else changes: it could not run there anyway). The addon does the
same (native/libtorch_log.cc).
"""

from __future__ import annotations

import os
import sys

import torch


def quiet_nnpack() -> None:
    if not torch._C._get_nnpack_enabled():
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        available = torch.backends.nnpack.is_available()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    if not available:
        torch.backends.nnpack.set_flags(False)
