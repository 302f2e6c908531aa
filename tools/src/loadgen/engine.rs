//! The engine: one thread, one epoll instance, every connection.
//!
//! Lesson 03 from the client's side. Every socket is nonblocking, epoll says
//! which ones have something to read (or, after a short write, room to
//! write), and the loop goes where there is work. Level-triggered, because
//! for a client that is the cheaper choice: a read that returns less than
//! the buffer means the socket is empty, so one `read` per event is enough,
//! where edge-triggered would need a second one to see `EAGAIN`. A
//! connection asks for "writable" only while it has bytes the kernel did not
//! take; a message normally fits the send buffer at once, and one
//! `epoll_wait`, one `write` and one `read` per echo is all the client costs.
//!
//! An open-loop run (`rate`) adds a schedule: the connections wait in a heap,
//! soonest due first, and a timerfd in the same epoll set wakes the loop
//! when the first of them is due.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nix::errno::Errno;
use nix::libc;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use socket2::{Domain, Protocol, Socket, Type};

use super::os::{Timer, pin_current_thread, thread_cpu_time};
use super::{ClientCpu, Close, Config, Latency, LoadError, Phase, Progress, RateReport, Report};
use crate::pattern;

/// How often the loop wakes up on its own, with nothing to read: to call
/// the progress callback, end a phase on time, and look for stalled echoes.
const TICK: Duration = Duration::from_millis(100);

/// The largest latency the histogram holds, in nanoseconds (a minute);
/// longer ones are recorded as a minute. With the default time limit (an
/// echo later than 10 s fails the run) nothing real is cut.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// Bytes built or read in one go. One buffer serves every connection: the
/// loop handles one connection at a time.
const SCRATCH: usize = 64 * 1024;

/// The epoll token of the schedule's timer; connections are numbered from 0.
const TIMER: u64 = u64::MAX;

/// Runs the load `config` describes and returns what it measured, or the
/// first error. `progress` is called about ten times a second and at every
/// change of phase, on this thread, so it should be quick (drawing a
/// progress bar is).
///
/// Blocks for `warmup + duration` plus connecting and draining. With
/// `config.pin_cpu` set, the calling thread stays pinned afterwards.
pub fn run(config: &Config, progress: impl FnMut(&Progress)) -> Result<Report, LoadError> {
    // The streams close here, as they drop: with a FIN, or with a reset
    // when `config.close` asks for one (their linger is set already).
    run_and_keep(config, progress).map(|(report, _streams)| report)
}

/// As [`run`], but hands back the connections, open and idle, instead of
/// closing them: `echo-bench --hold` keeps them so that a person can look at
/// what many idle clients cost the server.
pub fn run_and_keep(
    config: &Config,
    mut progress: impl FnMut(&Progress),
) -> Result<(Report, Vec<TcpStream>), LoadError> {
    config.validate()?;
    if let Some(cpu) = config.pin_cpu {
        pin_current_thread(cpu).map_err(|err| LoadError::Pin { cpu, err })?;
    }
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| LoadError::Setup {
        what: "create an epoll instance",
        err: e.into(),
    })?;
    let streams = connect_all(&epoll, config, &mut progress)?;
    let mut load = Load::new(config, epoll, streams)?;
    let report = load.run(&mut progress)?;
    let streams: Vec<TcpStream> = load.conns.into_iter().map(|c| c.stream).collect();
    if config.close == Close::Reset {
        for (index, stream) in streams.iter().enumerate() {
            set_reset_on_close(stream).map_err(|err| LoadError::Io {
                conn: index,
                during: "setsockopt(SO_LINGER)",
                err,
            })?;
        }
    }
    Ok((report, streams))
}

/// Makes `close` send a reset: `SO_LINGER` on, with a linger time of zero,
/// tells the kernel to throw away what is unsent and abort the connection
/// instead of the orderly FIN exchange.
fn set_reset_on_close(stream: &TcpStream) -> io::Result<()> {
    socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO))
}

/// Opens every connection at once and waits until all are established.
///
/// Why not one blocking `connect` after another? Against a server whose
/// accept queue is full, each one would wait out a SYN retry (a second or
/// more) before the next even starts. Nonblocking, they all go out at once:
/// `connect` returns `EINPROGRESS`, and epoll reports the socket writable
/// when the handshake has finished, or failed (`SO_ERROR` says which).
fn connect_all(
    epoll: &Epoll,
    config: &Config,
    progress: &mut impl FnMut(&Progress),
) -> Result<Vec<TcpStream>, LoadError> {
    let wanted = config.connections;
    let started = Instant::now();
    let deadline = started + config.timeout;
    let mut streams = Vec::with_capacity(wanted);
    let mut done = vec![false; wanted];
    let mut connected = 0;
    let fail = |connected, err| LoadError::Connect {
        connected,
        wanted,
        err,
    };

    for index in 0..wanted {
        let socket = Socket::new(
            Domain::for_address(config.addr),
            Type::STREAM.nonblocking(),
            Some(Protocol::TCP),
        )
        .map_err(|e| fail(connected, with_context("cannot create a socket", e)))?;
        // Small messages should leave at once: with Nagle's algorithm the
        // rest of a message written in two pieces would wait for an ACK.
        socket
            .set_tcp_nodelay(true)
            .map_err(|e| fail(connected, with_context("cannot set TCP_NODELAY", e)))?;
        match socket.connect(&config.addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(fail(connected, e)),
        }
        let stream = TcpStream::from(socket);
        // Writable means "the handshake is over"; epoll reports errors and
        // hang-ups whatever we ask for.
        epoll
            .add(&stream, EpollEvent::new(EpollFlags::EPOLLOUT, index as u64))
            .map_err(|e| fail(connected, with_context("cannot watch a socket", e.into())))?;
        streams.push(stream);
    }

    let mut events = vec![EpollEvent::empty(); 1024];
    let mut next_tick = started;
    while connected < wanted {
        let now = Instant::now();
        if now >= deadline {
            let err = io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the others did not connect within {:.1} s",
                    config.timeout.as_secs_f64()
                ),
            );
            return Err(fail(connected, err));
        }
        if now >= next_tick {
            progress(&Progress {
                phase: Phase::Connecting,
                elapsed: now - started,
                planned: config.timeout,
                connected,
                connections: wanted,
                responses: 0,
            });
            next_tick = now + TICK;
        }
        let n = match epoll.wait(&mut events, wait_until(now, deadline.min(next_tick))) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(fail(connected, with_context("epoll_wait", e.into()))),
        };
        for event in &events[..n] {
            let index = event.data() as usize;
            let stream = &streams[index];
            if done[index] {
                // Established already, and watched for nothing: epoll
                // reports only an error or a hang-up. The server closed it
                // before we sent a byte.
                return Err(fail(
                    connected,
                    io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("the server closed connection {index} before the run began"),
                    ),
                ));
            }
            // SO_ERROR: the handshake's outcome (ECONNREFUSED, ETIMEDOUT...).
            match stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return Err(fail(connected, e)),
            }
            // Connected. Until the run begins, watch for nothing (errors and
            // hang-ups are reported regardless): a level-triggered
            // "writable" would now fire on every wait.
            epoll
                .modify(
                    stream,
                    &mut EpollEvent::new(EpollFlags::empty(), index as u64),
                )
                .map_err(|e| fail(connected, with_context("cannot watch a socket", e.into())))?;
            done[index] = true;
            connected += 1;
        }
    }
    // Everyone is in. From now on a socket matters when an echo arrives; it
    // asks for "writable" again only when a write comes up short.
    for (index, stream) in streams.iter().enumerate() {
        epoll
            .modify(
                stream,
                &mut EpollEvent::new(EpollFlags::EPOLLIN, index as u64),
            )
            .map_err(|e| fail(connected, with_context("cannot watch a socket", e.into())))?;
    }
    progress(&Progress {
        phase: Phase::Connecting,
        elapsed: started.elapsed(),
        planned: config.timeout,
        connected,
        connections: wanted,
        responses: 0,
    });
    Ok(streams)
}

/// One client connection: a stream of bytes out, the same stream back.
///
/// Connection `i` sends [`pattern`] stream `i` from offset 0 on; message `k`
/// is bytes `k × length .. (k + 1) × length` of it. Three offsets into that
/// stream say where the connection is, and `released ≥ sent ≥ received`
/// always holds for an honest server:
struct Conn {
    stream: TcpStream,
    /// Bytes of messages started: they may be sent.
    released: u64,
    /// Bytes the kernel has taken from us (`write` returned).
    sent: u64,
    /// Bytes that came back and were checked.
    received: u64,
    /// The messages in flight, oldest first: one entry per message between
    /// `received` and `released`, at most `pipeline`.
    started: VecDeque<InFlight>,
    /// Whether epoll is asked for "writable" (a write came up short).
    want_write: bool,
    /// Open loop only: when this connection's next message is due.
    next_due: Instant,
    /// Open loop only: whether the connection is in the schedule's heap.
    queued: bool,
}

/// One message in flight.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// Where its latency counts from: when it was released (closed loop),
    /// or when it was due (open loop), which may be earlier.
    clock: Instant,
    /// When it was released to be sent. A stall is measured from here, so
    /// a client behind its own schedule does not take that for a server
    /// that stopped answering.
    released: Instant,
}

/// The open loop's timetable.
struct Schedule {
    /// Requests per second over all connections.
    rate: f64,
    /// The time between two messages of one connection.
    interval: Duration,
    /// Connections waiting for their next message to be due, soonest first.
    /// A connection whose pipeline is full is not here: its next echo puts
    /// it back.
    waiting: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Wakes the loop when the first of them is due.
    timer: Timer,
    /// When the timer is set to go off, if it is.
    armed: Option<Instant>,
}

/// What the window counts. Kept apart from the connections so a method can
/// hold one connection and the tally at the same time.
struct Tally {
    /// Count requests, responses, bytes and latencies (false while draining;
    /// the warm-up counts, then is reset).
    counting: bool,
    /// Start a new message when one completes (false while draining).
    sending: bool,
    requests: u64,
    responses: u64,
    bytes: u64,
    /// Messages started and not yet echoed, on every connection.
    in_flight: u64,
    /// Echoes verified in the whole run, never reset.
    all_responses: u64,
    /// Round trips, in nanoseconds.
    latency: Histogram<u64>,
}

struct Load {
    epoll: Epoll,
    conns: Vec<Conn>,
    scratch: Box<[u8]>,
    /// What the bytes just read should be, built to compare with them.
    expected: Box<[u8]>,
    length: u64,
    pipeline: usize,
    tally: Tally,
    /// The open loop's timetable; `None` for a closed loop.
    schedule: Option<Schedule>,
    config: Config,
}

impl Load {
    fn new(config: &Config, epoll: Epoll, streams: Vec<TcpStream>) -> Result<Load, LoadError> {
        let latency =
            Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).map_err(|e| LoadError::Setup {
                what: "create the latency histogram",
                err: io::Error::other(e.to_string()),
            })?;
        let now = Instant::now();
        let conns = streams
            .into_iter()
            .map(|stream| Conn {
                stream,
                released: 0,
                sent: 0,
                received: 0,
                started: VecDeque::with_capacity(config.pipeline),
                want_write: false,
                next_due: now,
                queued: false,
            })
            .collect();
        let schedule = match config.rate {
            Some(rate) => Some(Schedule::new(&epoll, rate, config.connections)?),
            None => None,
        };
        Ok(Load {
            epoll,
            conns,
            scratch: vec![0u8; SCRATCH].into_boxed_slice(),
            expected: vec![0u8; SCRATCH].into_boxed_slice(),
            length: config.length as u64,
            pipeline: config.pipeline,
            tally: Tally {
                counting: true,
                sending: true,
                requests: 0,
                responses: 0,
                bytes: 0,
                in_flight: 0,
                all_responses: 0,
                latency,
            },
            schedule,
            config: config.clone(),
        })
    }

    /// Warm-up, window, drain: the phases are deadlines on one clock, and
    /// the loop never sleeps past the next one.
    fn run(&mut self, progress: &mut impl FnMut(&Progress)) -> Result<Report, LoadError> {
        let mut now = Instant::now();
        let (mut phase, mut planned) = if self.config.warmup.is_zero() {
            (Phase::Measuring, self.window())
        } else {
            (Phase::WarmingUp, self.config.warmup)
        };
        let mut phase_start = now;
        let mut cpu_at_start = thread_cpu_time();
        let mut report = None;

        self.begin(now)?;

        let mut events = vec![EpollEvent::empty(); 1024];
        let mut next_tick = now;
        let mut changed = true;
        loop {
            now = Instant::now();
            if now >= phase_start + planned || (phase == Phase::Measuring && self.all_echoed()) {
                match phase {
                    Phase::WarmingUp => {
                        // Throw the warm-up's numbers away. Messages in
                        // flight now complete inside the window and count.
                        self.tally.reset();
                        phase = Phase::Measuring;
                        planned = self.window();
                        cpu_at_start = thread_cpu_time();
                    }
                    Phase::Measuring => {
                        // The window closes: take the numbers now, then stop
                        // starting messages and collect the ones in flight.
                        report = Some(self.report(now - phase_start, cpu_at_start, now));
                        self.tally.counting = false;
                        self.tally.sending = false;
                        phase = Phase::Draining;
                        planned = self.config.timeout;
                    }
                    Phase::Draining => return Err(self.oldest_stall(now)),
                    Phase::Connecting => unreachable!("connecting is over before the loop"),
                }
                phase_start = now;
                changed = true;
            }
            // Progress first, then the check for the end: a caller that
            // reads a clock at the start of the drain (the ladder reads the
            // server's CPU time) must hear of it even when nothing is in
            // flight and the drain ends at once, as it may in an open loop.
            if changed || now >= next_tick {
                self.check_stalls(now)?;
                progress(&Progress {
                    phase,
                    elapsed: now - phase_start,
                    planned,
                    connected: self.conns.len(),
                    connections: self.conns.len(),
                    responses: self.tally.responses,
                });
                next_tick = now + TICK;
                changed = false;
            }
            if phase == Phase::Draining && self.tally.in_flight == 0 {
                break;
            }

            // Send what is due, and set the timer for what is due next.
            self.release_due(now)?;
            self.arm_timer(now)?;
            let timeout = wait_until(now, (phase_start + planned).min(next_tick));
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    return Err(LoadError::Setup {
                        what: "wait for events (epoll_wait)",
                        err: e.into(),
                    });
                }
            };
            for event in &events[..n] {
                self.on_event(event.data() as usize, event.events())?;
            }
        }
        // Every byte sent has come back and been checked. Dropping the
        // sockets now closes them with a FIN each, nothing unread.
        let mut report = report.ok_or_else(|| LoadError::Setup {
            what: "finish the run",
            err: io::Error::other("the drain ended before the window closed"),
        })?;
        report.responses_in_run = self.tally.all_responses;
        Ok(report)
    }

    /// How long the measured window may last: `duration`, or, with a fixed
    /// number of echoes, as long as they take (a year stands for that: each
    /// echo still has its time limit).
    fn window(&self) -> Duration {
        match self.config.echoes {
            Some(_) => Duration::from_secs(365 * 24 * 3600),
            None => self.config.duration,
        }
    }

    /// With a fixed number of echoes: whether every connection has had its
    /// echoes back, which ends the window.
    fn all_echoed(&self) -> bool {
        // No connection starts more than its share, so the total says it.
        self.config
            .echoes
            .is_some_and(|n| self.tally.all_responses >= n * self.conns.len() as u64)
    }

    /// The first messages: a closed loop fills every connection's pipeline
    /// at once; an open loop puts every connection on the schedule, their
    /// first messages spread over one interval so they do not all go at once.
    fn begin(&mut self, now: Instant) -> Result<(), LoadError> {
        let count = self.conns.len();
        for index in 0..count {
            let conn = &mut self.conns[index];
            match &mut self.schedule {
                None => {
                    for _ in 0..self.pipeline {
                        if may_start(conn, self.length, self.config.echoes) {
                            start_message(conn, &mut self.tally, self.length, now, now);
                        }
                    }
                }
                Some(schedule) => {
                    conn.next_due = now + schedule.interval.mul_f64(index as f64 / count as f64);
                    schedule.queue(conn, index);
                }
            }
            flush(
                &self.epoll,
                conn,
                index,
                &mut self.scratch,
                &mut self.tally,
                self.length,
            )?;
        }
        Ok(())
    }

    /// A socket is readable (an echo, or EOF, or an error) or writable, or
    /// the schedule's timer went off.
    fn on_event(&mut self, index: usize, flags: EpollFlags) -> Result<(), LoadError> {
        if index as u64 == TIMER {
            // The loop sends what is due right after this batch of events.
            // (Edge-triggered, so nothing needs reading: setting the timer
            // again resets it.)
            if let Some(schedule) = &mut self.schedule {
                schedule.armed = None;
            }
            return Ok(());
        }
        let conn = &mut self.conns[index];
        if flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
            // One clock reading per event: the echoes read now completed
            // now, and the messages they release start now.
            let now = Instant::now();
            let completed = receive(
                conn,
                index,
                &mut self.scratch,
                &mut self.expected,
                &mut self.tally,
                self.length,
                now,
            )?;
            if self.tally.sending && completed > 0 {
                match &mut self.schedule {
                    // The closed loop: an echo back, the next message out.
                    None => {
                        for _ in 0..completed {
                            if may_start(conn, self.length, self.config.echoes) {
                                start_message(conn, &mut self.tally, self.length, now, now);
                            }
                        }
                    }
                    // The open loop: room in the pipeline, for the
                    // messages that are due, or a place in the heap.
                    Some(schedule) => schedule.release(
                        conn,
                        index,
                        &mut self.tally,
                        self.length,
                        self.pipeline,
                        now,
                    ),
                }
            }
        }
        // After a read there may be new messages to send; after "writable"
        // there is room for the rest of an old one.
        if conn.sent < conn.released {
            flush(
                &self.epoll,
                conn,
                index,
                &mut self.scratch,
                &mut self.tally,
                self.length,
            )?;
        }
        Ok(())
    }

    /// Open loop: releases the messages of every connection whose time has
    /// come, and sends them.
    fn release_due(&mut self, now: Instant) -> Result<(), LoadError> {
        let Some(schedule) = &mut self.schedule else {
            return Ok(());
        };
        if !self.tally.sending {
            return Ok(());
        }
        while let Some(&Reverse((due, index))) = schedule.waiting.peek() {
            if due > now {
                break;
            }
            schedule.waiting.pop();
            let conn = &mut self.conns[index];
            conn.queued = false;
            schedule.release(
                conn,
                index,
                &mut self.tally,
                self.length,
                self.pipeline,
                now,
            );
            flush(
                &self.epoll,
                conn,
                index,
                &mut self.scratch,
                &mut self.tally,
                self.length,
            )?;
        }
        Ok(())
    }

    /// Open loop: sets the timer for the next message due, unless it is set
    /// to go off at that time or before (a timer set costs a system call;
    /// going off a little early costs one turn of the loop, which sets it
    /// again). While echoes keep the loop busy, the sends that fall due are
    /// made in passing, and the timer matters only when the loop is idle.
    fn arm_timer(&mut self, now: Instant) -> Result<(), LoadError> {
        let Some(schedule) = &mut self.schedule else {
            return Ok(());
        };
        let Some(&Reverse((due, _))) = schedule.waiting.peek() else {
            return Ok(());
        };
        if schedule.armed.is_none_or(|armed| armed > due) {
            schedule
                .timer
                .arm(due.saturating_duration_since(now))
                .map_err(|err| LoadError::Setup {
                    what: "set the schedule's timer (timerfd_settime)",
                    err,
                })?;
            schedule.armed = Some(due);
        }
        Ok(())
    }

    /// A connection whose oldest message has waited longer than the time
    /// limit fails the run: a server that stops answering one client
    /// (lesson 01 with a second one, a lost wake-up) must not hide behind
    /// the throughput of the others.
    fn check_stalls(&self, now: Instant) -> Result<(), LoadError> {
        for (index, conn) in self.conns.iter().enumerate() {
            if let Some(oldest) = conn.started.front()
                && now.duration_since(oldest.released) >= self.config.timeout
            {
                return Err(stalled(index, conn, now));
            }
        }
        Ok(())
    }

    /// The drain ran out of time: name the connection that waited longest.
    fn oldest_stall(&self, now: Instant) -> LoadError {
        let oldest = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.started.front().map(|m| (i, m.released)))
            .min_by_key(|(_, t)| *t);
        match oldest {
            Some((index, _)) => stalled(index, &self.conns[index], now),
            None => LoadError::Setup {
                what: "finish the drain",
                err: io::Error::other("messages counted in flight, but none found"),
            },
        }
    }

    fn report(
        &self,
        window: Duration,
        cpu_at_start: Option<(Duration, Duration)>,
        now: Instant,
    ) -> Report {
        let t = &self.tally;
        let seconds = window.as_secs_f64();
        let per_sec = |n: u64| n as f64 / seconds;
        let client_cpu = match (cpu_at_start, thread_cpu_time()) {
            (Some((u0, s0)), Some((u1, s1))) => {
                let (user, system) = (u1.saturating_sub(u0), s1.saturating_sub(s0));
                Some(ClientCpu {
                    user_seconds: user.as_secs_f64(),
                    system_seconds: system.as_secs_f64(),
                    busy: (user + system).as_secs_f64() / seconds,
                })
            }
            _ => None,
        };
        let rate = self.schedule.as_ref().map(|schedule| {
            let behind = self.conns.iter().map(|c| schedule.behind(c, now)).sum();
            RateReport::new(schedule.rate, per_sec(t.responses), behind)
        });
        Report {
            address: self.config.addr,
            connections: self.conns.len(),
            length: self.config.length,
            pipeline: self.pipeline,
            warmup_seconds: self.config.warmup.as_secs_f64(),
            seconds,
            requests: t.requests,
            responses: t.responses,
            bytes: t.bytes,
            requests_per_sec: per_sec(t.requests),
            responses_per_sec: per_sec(t.responses),
            bytes_per_sec: per_sec(t.bytes),
            latency_us: Latency::from_nanos(&t.latency),
            errors: 0,
            pinned_cpu: self.config.pin_cpu,
            client_cpu,
            rate,
            // Filled in when the drain is over.
            responses_in_run: 0,
            histogram: t.latency.clone(),
        }
    }
}

impl Tally {
    fn reset(&mut self) {
        self.requests = 0;
        self.responses = 0;
        self.bytes = 0;
        self.latency.reset();
    }
}

impl Schedule {
    /// A schedule of `rate` requests/s over `connections`, its timer watched
    /// by `epoll`.
    fn new(epoll: &Epoll, rate: f64, connections: usize) -> Result<Schedule, LoadError> {
        let timer = Timer::new().map_err(|err| LoadError::Setup {
            what: "create the schedule's timer (timerfd_create)",
            err,
        })?;
        // Edge-triggered: each expiry is one event, and no `read` is needed
        // to clear it (setting the timer again resets its count).
        epoll
            .add(
                &timer,
                EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, TIMER),
            )
            .map_err(|e| LoadError::Setup {
                what: "watch the schedule's timer",
                err: e.into(),
            })?;
        // At least a nanosecond: an impossible rate must still advance the
        // schedule, and count its backlog, without dividing by zero.
        let interval =
            Duration::from_secs_f64(connections as f64 / rate).max(Duration::from_nanos(1));
        Ok(Schedule {
            rate,
            interval,
            waiting: BinaryHeap::with_capacity(connections),
            timer,
            armed: None,
        })
    }

    /// Puts `conn` in the heap, at the time its next message is due.
    fn queue(&mut self, conn: &mut Conn, index: usize) {
        if !conn.queued {
            self.waiting.push(Reverse((conn.next_due, index)));
            conn.queued = true;
        }
    }

    /// Starts every message of `conn` that is due by `now`, as far as its
    /// pipeline has room, each with its latency clock at the time it was
    /// due; then, if there is room for the next one, queues the connection
    /// for it.
    fn release(
        &mut self,
        conn: &mut Conn,
        index: usize,
        tally: &mut Tally,
        length: u64,
        pipeline: usize,
        now: Instant,
    ) {
        while conn.started.len() < pipeline && conn.next_due <= now {
            start_message(conn, tally, length, conn.next_due, now);
            conn.next_due += self.interval;
        }
        if conn.started.len() < pipeline {
            self.queue(conn, index);
        }
    }

    /// How many of `conn`'s messages were due by `now` and not yet sent.
    fn behind(&self, conn: &Conn, now: Instant) -> u64 {
        if conn.next_due > now {
            return 0;
        }
        let late = now.duration_since(conn.next_due).as_nanos() / self.interval.as_nanos();
        u64::try_from(late).unwrap_or(u64::MAX).saturating_add(1)
    }
}

fn stalled(index: usize, conn: &Conn, now: Instant) -> LoadError {
    LoadError::Stalled {
        conn: index,
        waited: conn
            .started
            .front()
            .map_or(Duration::ZERO, |m| now.duration_since(m.released)),
        received: conn.received,
        sent: conn.sent,
    }
}

/// Whether a closed loop may start another message on `conn`: always,
/// unless the connection has started its fixed number of echoes.
fn may_start(conn: &Conn, length: u64, echoes: Option<u64>) -> bool {
    echoes.is_none_or(|n| conn.released < n * length)
}

/// Starts one message: its bytes may now be sent, and its latency counts
/// from `clock` (now, or the earlier time it was due).
fn start_message(conn: &mut Conn, tally: &mut Tally, length: u64, clock: Instant, now: Instant) {
    conn.released += length;
    conn.started.push_back(InFlight {
        clock,
        released: now,
    });
    tally.in_flight += 1;
}

/// Reads what has arrived, checks every byte against what was sent at that
/// position, and completes the messages it finishes; returns how many.
fn receive(
    conn: &mut Conn,
    index: usize,
    scratch: &mut [u8],
    expected: &mut [u8],
    tally: &mut Tally,
    length: u64,
    now: Instant,
) -> Result<u64, LoadError> {
    let mut completed_here = 0;
    loop {
        let n = match conn.stream.read(scratch) {
            // EOF: an echo server closes only after its client does. Any
            // EOF during a run is the server giving up on us.
            Ok(0) => {
                return Err(LoadError::Closed {
                    conn: index,
                    received: conn.received,
                    sent: conn.sent,
                });
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(completed_here),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                return Err(LoadError::Io {
                    conn: index,
                    during: "read",
                    err,
                });
            }
        };
        let data = &scratch[..n];
        // An echo cannot run ahead of what we sent: `sent` is updated as
        // soon as `write` returns, before this thread can read anything.
        if conn.received + n as u64 > conn.sent {
            return Err(LoadError::Extra {
                conn: index,
                received: conn.received + n as u64,
                sent: conn.sent,
            });
        }
        // The check: build what was sent at these offsets again and
        // compare. No copy of the messages in flight is kept, and a byte
        // from another connection fails too (it is another stream). The
        // slices are compared whole first (one `memcmp`, vectorised); only
        // a difference is looked for byte by byte, to name it.
        let expected = &mut expected[..n];
        pattern::fill(index as u64, conn.received, expected);
        if data != &expected[..] {
            let i = data
                .iter()
                .zip(expected.iter())
                .position(|(got, wanted)| got != wanted)
                .unwrap_or(0);
            return Err(LoadError::Mismatch {
                conn: index,
                offset: conn.received + i as u64,
                got: data[i],
                wanted: expected[i],
            });
        }
        let completed = (conn.received + n as u64) / length - conn.received / length;
        conn.received += n as u64;
        if tally.counting {
            tally.bytes += n as u64;
        }
        for _ in 0..completed {
            // Messages complete in the order they started: one TCP stream.
            let Some(message) = conn.started.pop_front() else {
                break; // cannot happen: received ≤ sent ≤ released
            };
            tally.in_flight -= 1;
            tally.all_responses += 1;
            completed_here += 1;
            if tally.counting {
                let waited = now.duration_since(message.clock).as_nanos();
                let ns = u64::try_from(waited).unwrap_or(u64::MAX);
                tally.latency.saturating_record(ns.max(1));
                tally.responses += 1;
            }
        }
        // Level-triggered: a read that did not fill the buffer emptied the
        // socket, and epoll will report it again when more arrives. Only a
        // full buffer is worth another read now.
        if n < scratch.len() {
            return Ok(completed_here);
        }
    }
}

/// Sends the connection's released bytes, as far as the kernel takes them.
///
/// The bytes are built on the spot from the pattern, into the shared
/// scratch buffer; `sent` is all the state a short write needs, because the
/// bytes at any offset can be built again. When the kernel takes less than
/// offered, its send buffer is full: ask epoll for "writable" and come back.
fn flush(
    epoll: &Epoll,
    conn: &mut Conn,
    index: usize,
    scratch: &mut [u8],
    tally: &mut Tally,
    length: u64,
) -> Result<(), LoadError> {
    let mut blocked = false;
    while conn.sent < conn.released {
        let want = (conn.released - conn.sent).min(scratch.len() as u64) as usize;
        pattern::fill(index as u64, conn.sent, &mut scratch[..want]);
        match conn.stream.write(&scratch[..want]) {
            Ok(n) => {
                let requests = (conn.sent + n as u64) / length - conn.sent / length;
                conn.sent += n as u64;
                if tally.counting {
                    tally.requests += requests;
                }
                if n < want {
                    // Short write: the next one would only say EAGAIN.
                    blocked = true;
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                blocked = true;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                return Err(LoadError::Io {
                    conn: index,
                    during: "write",
                    err,
                });
            }
        }
    }
    // Ask for "writable" exactly while bytes wait: a socket with room is
    // writable nearly all the time, and asking regardless would wake the
    // loop for nothing.
    if blocked != conn.want_write {
        let mut flags = EpollFlags::EPOLLIN;
        if blocked {
            flags |= EpollFlags::EPOLLOUT;
        }
        epoll
            .modify(&conn.stream, &mut EpollEvent::new(flags, index as u64))
            .map_err(|e| LoadError::Io {
                conn: index,
                during: "epoll_ctl",
                err: e.into(),
            })?;
        conn.want_write = blocked;
    }
    Ok(())
}

/// The epoll timeout that wakes us at `deadline`: rounded up to whole
/// milliseconds, so we never wake a moment early and spin.
fn wait_until(now: Instant, deadline: Instant) -> EpollTimeout {
    let left = deadline.saturating_duration_since(now);
    let ms = left.as_micros().div_ceil(1000);
    EpollTimeout::from(u16::try_from(ms).unwrap_or(u16::MAX))
}

fn with_context(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// What a run that never reads saw: `echo-bench --no-read`.
#[derive(Debug, Clone)]
pub struct Flood {
    /// The server.
    pub address: std::net::SocketAddr,
    /// Clients (connections).
    pub connections: usize,
    /// Bytes the kernel took from the client's writes, on all connections.
    pub bytes_sent: u64,
    /// How long the run wrote (or tried to), in seconds.
    pub seconds: f64,
    /// When, counted from the start, a write last made progress: after it,
    /// every buffer between the client's writes and the server was full.
    /// `None` if nothing could be written at all.
    pub last_progress_seconds: Option<f64>,
}

/// Sends on every connection and never reads a byte back, for
/// `config.duration`: `config.rate` messages of `config.length` bytes a
/// second over all connections, or without a rate as fast as the kernel
/// takes them. This is the misbehaving client a server's backpressure is
/// for: the echoes pile up in the client's receive buffer, then in the
/// server's send buffer, and a server that keeps reading must hold the rest
/// itself. Watch the server's `ss -tn` queues and its memory while it runs.
///
/// When the run ends the sockets close with bytes unread, which the kernel
/// turns into a reset, whatever `config.close` says.
pub fn flood(config: &Config, mut progress: impl FnMut(&Progress)) -> Result<Flood, LoadError> {
    config.validate()?;
    if let Some(cpu) = config.pin_cpu {
        pin_current_thread(cpu).map_err(|err| LoadError::Pin { cpu, err })?;
    }
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| LoadError::Setup {
        what: "create an epoll instance",
        err: e.into(),
    })?;
    let streams = connect_all(&epoll, config, &mut progress)?;
    // Watch for "writable" only, edge-triggered: the echoes arriving must
    // not wake us (we never read them), and a full send buffer should wake
    // us once, when it has room again.
    for (index, stream) in streams.iter().enumerate() {
        epoll
            .modify(
                stream,
                &mut EpollEvent::new(EpollFlags::EPOLLOUT | EpollFlags::EPOLLET, index as u64),
            )
            .map_err(|e| LoadError::Io {
                conn: index,
                during: "epoll_ctl",
                err: e.into(),
            })?;
    }
    // Each connection's next message is due every `interval`; the
    // connections start together (unlike the echo loop's schedule, bunching
    // does not matter to a client that measures no latency).
    let interval = config
        .rate
        .map(|rate| Duration::from_secs_f64(streams.len() as f64 / rate));
    let length = config.length as u64;
    let mut sent = vec![0u64; streams.len()];
    let mut scratch = vec![0u8; SCRATCH];
    let mut events = vec![EpollEvent::empty(); 1024];
    let start = Instant::now();
    let end = start + config.duration;
    let mut last_progress = None;
    let mut next_tick = start;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let elapsed = now - start;
        // How many bytes each connection should have written by now.
        let due = match interval {
            Some(every) => {
                let messages = (elapsed.as_nanos() / every.as_nanos()) as u64 + 1;
                messages.saturating_mul(length)
            }
            None => u64::MAX,
        };
        for (index, stream) in streams.iter().enumerate() {
            let mut stream = stream;
            while sent[index] < due {
                let want = (due - sent[index]).min(SCRATCH as u64) as usize;
                pattern::fill(index as u64, sent[index], &mut scratch[..want]);
                match stream.write(&scratch[..want]) {
                    Ok(n) => {
                        sent[index] += n as u64;
                        last_progress = Some(elapsed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => {
                        return Err(LoadError::Io {
                            conn: index,
                            during: "write",
                            err,
                        });
                    }
                }
            }
        }
        if now >= next_tick {
            progress(&Progress {
                phase: Phase::Measuring,
                elapsed,
                planned: config.duration,
                connected: streams.len(),
                connections: streams.len(),
                responses: 0,
            });
            next_tick = now + TICK;
        }
        // Sleep until a buffer has room, the next message is due, the next
        // progress tick, or the end.
        let mut wake = end.min(next_tick);
        if let Some(every) = interval {
            let next = (elapsed.as_nanos() / every.as_nanos() + 1) as f64;
            wake = wake.min(start + every.mul_f64(next));
        }
        match epoll.wait(&mut events, wait_until(now, wake)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                return Err(LoadError::Setup {
                    what: "wait for events (epoll_wait)",
                    err: e.into(),
                });
            }
        }
    }
    Ok(Flood {
        address: config.addr,
        connections: streams.len(),
        bytes_sent: sent.iter().sum(),
        seconds: start.elapsed().as_secs_f64(),
        last_progress_seconds: last_progress.map(|d| d.as_secs_f64()),
    })
}
