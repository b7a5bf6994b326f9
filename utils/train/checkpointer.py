"""A run's checkpoints: resuming from last.pdparams (optimizer, schedule, loss, loss scaler and random
state, bit-exactly), writing last.pdparams and best.pdparams, tracking the best mAP, and the check that
no checkpoint is written from non-finite weights (a diverged run stops with one line instead)."""
import logging
import os

from models.checkpoint import TrainState, nonfinite_tensors, restore_rng, save_checkpoint
from utils.errors import UserError
from utils.rundir import RunDir

log = logging.getLogger("deephash")


class Checkpointer:
    """`model`'s checkpoints under `run_dir` (a RunDir); `rng`: the run's np.random.RandomState, saved
    and restored with Paddle's and Python's random state. Writes happen on the main process only."""

    def __init__(self, cfg, env, run_dir, model, rng):
        self.cfg, self.env, self.run, self.model, self.rng = cfg, env, run_dir, model, rng

    def resume(self, ckpt, optimizer, scheduler, criterion, amp):
        """The TrainState of the --resume checkpoint `ckpt`, its optimizer, loss, loss-scaler and random
        state restored into the given objects, the lr schedule recomputed for its completed epochs."""
        if "optimizer" not in ckpt:
            raise UserError(f"--resume {self.cfg['resume']}: this checkpoint has no optimizer state (a "
                            f"{RunDir.BEST}?); resume from {RunDir.LAST}, or start a new run from it with --pretrained")
        state = TrainState.from_checkpoint(ckpt)
        optimizer.set_state_dict(ckpt["optimizer"])
        # the schedule is a function of completed epochs: recompute it (the step may differ from the
        # checkpoint's when --epochs was raised) instead of restoring the old scheduler state
        scheduler.last_epoch = state.epoch
        scheduler.last_lr = scheduler.get_lr()
        criterion.set_state_dict(ckpt["criterion"])
        amp.set_state_dict(ckpt.get("amp"))
        restore_rng(ckpt, self.rng)
        log.info("resuming at epoch %d%s, best mAP so far %s", state.epoch + 1,
                 f" step {state.step}" if state.step else "",
                 f"{state.best_map:.4f} (epoch {state.best_epoch})" if state.best_map >= 0
                 else "none (no evaluation yet)")
        return state

    def save_last(self, state, optimizer, scheduler, criterion, amp):
        """last.pdparams: resumable (main process only)."""
        if self.env.is_main:
            save_checkpoint(self.run.last, self.model, self.cfg, state, optimizer, scheduler, criterion, amp,
                            rng=self.rng)

    def save_best(self, state):
        """best.pdparams: weights and state for evaluation and export (main process only)."""
        if self.env.is_main:
            save_checkpoint(self.run.best, self.model, self.cfg, state, rng=self.rng)

    @staticmethod
    def record(state, epoch, map_value):
        """Update the best mAP of `state` with the evaluation of `epoch`; True when it improved."""
        improved = map_value > state.best_map
        if improved:
            state.best_map, state.best_epoch = map_value, epoch
        return improved

    def diverged(self, what, epoch, step):
        """Stop a diverged run: one line on stderr and in train.log, pointing at the last good checkpoint
        (every checkpoint is written only after its weights were checked to be finite)."""
        last = self.run.last
        hint = (f"the last good checkpoint is {last} — lower -lr and --resume it" if os.path.exists(last)
                else "no checkpoint was written yet — lower -lr and start again")
        message = f"training diverged: {what} at epoch {epoch} step {step}; {hint}"
        log.error(message)
        raise UserError(message)

    def check_weights(self, epoch, step):
        bad = nonfinite_tensors(self.model.state_dict())
        if bad:
            self.diverged(f"{len(bad)} weight tensors hold NaN/inf (first: {bad[0]})", epoch, step)
