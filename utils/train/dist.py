"""Process-group helpers: one process or many (`python -m paddle.distributed.launch`), GPU or CPU
(gloo). Everything degrades to a no-op on a single process."""
import os

import paddle
import paddle.distributed as pdist


def choose_device(requested="auto"):
    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if requested == "gpu" and not has_gpu:
        from utils.errors import UserError

        raise UserError("--device gpu: no CUDA device is visible to this Paddle build; use --device cpu "
                        "or install paddlepaddle-gpu (see README)")
    return "gpu" if (requested == "gpu" or (requested == "auto" and has_gpu)) else "cpu"


class Env:
    """rank / world size / device of this process."""

    def __init__(self, distributed, device="auto"):
        self.device = choose_device(device)
        self.distributed = distributed and int(os.environ.get("PADDLE_TRAINERS_NUM", "1")) > 1
        if self.device == "gpu" and self.distributed:
            paddle.set_device(f"gpu:{pdist.ParallelEnv().device_id}")
        else:
            paddle.set_device(self.device)
        if self.distributed:
            pdist.init_parallel_env()
        self.rank = pdist.get_rank() if self.distributed else 0
        self.world_size = pdist.get_world_size() if self.distributed else 1

    @property
    def is_main(self):
        return self.rank == 0

    def barrier(self):
        if self.distributed:
            pdist.barrier()

    def gather_tensor(self, t):
        """Concatenate equally shaped tensors from every process along axis 0 (rank order)."""
        if not self.distributed:
            return t
        parts = []
        pdist.all_gather(parts, t)
        return paddle.concat(parts)

    def gather_object(self, obj):
        """List of one picklable object per process (rank order)."""
        if not self.distributed:
            return [obj]
        parts = []
        pdist.all_gather_object(parts, obj)
        return parts

    def any(self, flag):
        """True on every process if `flag` is true on any (used to stop all ranks together)."""
        if not self.distributed:
            return bool(flag)
        t = paddle.to_tensor([1 if flag else 0], dtype="int32")
        pdist.all_reduce(t)
        return int(t.item()) > 0
