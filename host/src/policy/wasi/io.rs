//! `wasi:io` for the sandbox: pollables on the virtual clock, a closed stdin
//! and write-only stdout/stderr. Nothing blocks: waiting moves the virtual
//! clock or stops the decision at its deadline.

use wasmtime::component::Resource;

use super::bindings::io::{error, poll, streams};
use super::{Handle, InputStream, IoError, OutputStream, Pollable, Sandbox, SandboxStop, Stdio};

type StreamResult<T> = wasmtime::Result<Result<T, streams::StreamError>>;

/// Bytes `check-write` grants at a time.
const WRITE_PERMIT: u64 = 64 << 10;

impl Sandbox {
    /// A pollable that is ready once the virtual clock reaches `at` (ns).
    pub(super) fn pollable_at(&mut self, at: u64) -> wasmtime::Result<Resource<Pollable>> {
        Ok(Resource::new_own(self.insert(Handle::ReadyAt(at))?))
    }

    fn ready_at(&mut self, rep: u32) -> wasmtime::Result<u64> {
        match self.handle(rep)? {
            Handle::ReadyAt(at) => Ok(at),
            // Streams are always ready: stdin is closed, outputs always accept.
            Handle::Stdin | Handle::Output(_) => Ok(0),
        }
    }

    fn output(&mut self, rep: u32) -> wasmtime::Result<Stdio> {
        match self.handle(rep)? {
            Handle::Output(s) => Ok(s),
            other => Err(self.halt(SandboxStop::Misuse(format!(
                "handle {rep} is {other:?}, not an output stream"
            )))),
        }
    }
}

impl error::Host for Sandbox {}

impl error::HostError for Sandbox {
    fn to_debug_string(&mut self, _err: Resource<IoError>) -> wasmtime::Result<String> {
        Ok("error".to_owned())
    }

    fn drop(&mut self, err: Resource<IoError>) -> wasmtime::Result<()> {
        self.remove(err.rep());
        Ok(())
    }
}

impl poll::Host for Sandbox {
    fn poll(&mut self, pollables: Vec<Resource<Pollable>>) -> wasmtime::Result<Vec<u32>> {
        let mut times = Vec::with_capacity(pollables.len());
        for p in &pollables {
            times.push(self.ready_at(p.rep())?);
        }
        let Some(earliest) = times.iter().copied().min() else {
            return Err(self.halt(SandboxStop::Misuse("poll on an empty list".into())));
        };
        self.wait_until(earliest)?;
        let now = self.mono_ns;
        Ok((0u32..)
            .zip(times)
            .filter(|(_, at)| *at <= now)
            .map(|(i, _)| i)
            .collect())
    }
}

impl poll::HostPollable for Sandbox {
    fn ready(&mut self, p: Resource<Pollable>) -> wasmtime::Result<bool> {
        Ok(self.ready_at(p.rep())? <= self.mono_ns)
    }

    fn block(&mut self, p: Resource<Pollable>) -> wasmtime::Result<()> {
        let at = self.ready_at(p.rep())?;
        self.wait_until(at)
    }

    fn drop(&mut self, p: Resource<Pollable>) -> wasmtime::Result<()> {
        self.remove(p.rep());
        Ok(())
    }
}

impl streams::Host for Sandbox {}

impl streams::HostInputStream for Sandbox {
    fn read(&mut self, _s: Resource<InputStream>, _len: u64) -> StreamResult<Vec<u8>> {
        Ok(Err(streams::StreamError::Closed))
    }

    fn blocking_read(&mut self, _s: Resource<InputStream>, _len: u64) -> StreamResult<Vec<u8>> {
        Ok(Err(streams::StreamError::Closed))
    }

    fn skip(&mut self, _s: Resource<InputStream>, _len: u64) -> StreamResult<u64> {
        Ok(Err(streams::StreamError::Closed))
    }

    fn blocking_skip(&mut self, _s: Resource<InputStream>, _len: u64) -> StreamResult<u64> {
        Ok(Err(streams::StreamError::Closed))
    }

    fn subscribe(&mut self, _s: Resource<InputStream>) -> wasmtime::Result<Resource<Pollable>> {
        self.pollable_at(0)
    }

    fn drop(&mut self, s: Resource<InputStream>) -> wasmtime::Result<()> {
        self.remove(s.rep());
        Ok(())
    }
}

impl streams::HostOutputStream for Sandbox {
    fn check_write(&mut self, s: Resource<OutputStream>) -> StreamResult<u64> {
        self.output(s.rep())?;
        Ok(Ok(WRITE_PERMIT))
    }

    fn write(&mut self, s: Resource<OutputStream>, contents: Vec<u8>) -> StreamResult<()> {
        let stream = self.output(s.rep())?;
        self.write_bytes(stream, &contents)?;
        Ok(Ok(()))
    }

    fn blocking_write_and_flush(
        &mut self,
        s: Resource<OutputStream>,
        contents: Vec<u8>,
    ) -> StreamResult<()> {
        self.write(s, contents)
    }

    fn flush(&mut self, s: Resource<OutputStream>) -> StreamResult<()> {
        self.output(s.rep())?;
        Ok(Ok(()))
    }

    fn blocking_flush(&mut self, s: Resource<OutputStream>) -> StreamResult<()> {
        self.flush(s)
    }

    fn subscribe(&mut self, s: Resource<OutputStream>) -> wasmtime::Result<Resource<Pollable>> {
        self.output(s.rep())?;
        self.pollable_at(0)
    }

    fn write_zeroes(&mut self, s: Resource<OutputStream>, len: u64) -> StreamResult<()> {
        self.output(s.rep())?;
        self.count_written(len)?;
        Ok(Ok(()))
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        s: Resource<OutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        self.write_zeroes(s, len)
    }

    fn splice(
        &mut self,
        s: Resource<OutputStream>,
        _src: Resource<InputStream>,
        _len: u64,
    ) -> StreamResult<u64> {
        self.output(s.rep())?;
        // The only input stream is the closed stdin.
        Ok(Err(streams::StreamError::Closed))
    }

    fn blocking_splice(
        &mut self,
        s: Resource<OutputStream>,
        src: Resource<InputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        self.splice(s, src, len)
    }

    fn drop(&mut self, s: Resource<OutputStream>) -> wasmtime::Result<()> {
        self.remove(s.rep());
        Ok(())
    }
}
