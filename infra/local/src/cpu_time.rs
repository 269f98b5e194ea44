//! The CPU time a future spends in its own polls: what a hosted function's handler computes, apart
//! from waiting (on the emulator, on a core of this 2-core machine, on the other tasks of this
//! process). The bench reports it per step as "own CPU" beside wall time minus waits.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// This thread's CPU time so far (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `inner`, counting the CPU time of each of its polls (on whichever thread polls it).
pub struct CpuTimed<F> {
    inner: Pin<Box<F>>,
    spent: Duration,
}

impl<F: Future> CpuTimed<F> {
    pub fn new(inner: F) -> Self {
        CpuTimed { inner: Box::pin(inner), spent: Duration::ZERO }
    }
}

impl<F: Future> Future for CpuTimed<F> {
    /// The output, and the CPU time its polls took.
    type Output = (F::Output, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let before = thread_cpu();
        let polled = self.inner.as_mut().poll(cx);
        let spent = thread_cpu().saturating_sub(before);
        self.spent += spent;
        polled.map(|out| (out, self.spent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_the_polls_cpu_and_not_their_waits() {
        let (_, spent) = CpuTimed::new(async {
            // Waiting between polls, and a thread descheduled inside a poll: neither is CPU.
            tokio::time::sleep(Duration::from_millis(50)).await;
            std::thread::sleep(Duration::from_millis(40));
            let started = std::time::Instant::now();
            let mut x = 0u64;
            while started.elapsed() < Duration::from_millis(20) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        })
        .await;
        assert!(spent >= Duration::from_millis(15) && spent < Duration::from_millis(45), "{spent:?}");
    }
}
