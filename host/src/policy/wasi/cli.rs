//! `wasi:cli`, `wasi:clocks` and `wasi:random` for the sandbox: no environment,
//! no arguments, no terminal, stdio as bounded buffers, `exit` as a stop,
//! clocks that only move when the guest waits, randomness from the seed.

use wasmtime::component::Resource;

use super::bindings::cli::{
    environment, exit, stderr, stdin, stdout, terminal_input, terminal_output, terminal_stderr,
    terminal_stdin, terminal_stdout,
};
use super::bindings::clocks::{monotonic_clock, wall_clock};
use super::bindings::random::{insecure, insecure_seed, random};
use super::{
    Handle, InputStream, OutputStream, Pollable, Sandbox, SandboxStop, Stdio, TerminalInput,
    TerminalOutput,
};

impl environment::Host for Sandbox {
    fn get_environment(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(Vec::new())
    }

    fn get_arguments(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn initial_cwd(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(None)
    }
}

impl exit::Host for Sandbox {
    fn exit(&mut self, status: Result<(), ()>) -> wasmtime::Result<()> {
        Err(self.halt(SandboxStop::Exit(u8::from(status.is_err()))))
    }

    fn exit_with_code(&mut self, code: u8) -> wasmtime::Result<()> {
        Err(self.halt(SandboxStop::Exit(code)))
    }
}

impl stdin::Host for Sandbox {
    fn get_stdin(&mut self) -> wasmtime::Result<Resource<InputStream>> {
        Ok(Resource::new_own(self.insert(Handle::Stdin)?))
    }
}

impl stdout::Host for Sandbox {
    fn get_stdout(&mut self) -> wasmtime::Result<Resource<OutputStream>> {
        Ok(Resource::new_own(self.insert(Handle::Output(Stdio::Out))?))
    }
}

impl stderr::Host for Sandbox {
    fn get_stderr(&mut self) -> wasmtime::Result<Resource<OutputStream>> {
        Ok(Resource::new_own(self.insert(Handle::Output(Stdio::Err))?))
    }
}

impl terminal_input::Host for Sandbox {}

impl terminal_input::HostTerminalInput for Sandbox {
    fn drop(&mut self, t: Resource<TerminalInput>) -> wasmtime::Result<()> {
        self.remove(t.rep());
        Ok(())
    }
}

impl terminal_output::Host for Sandbox {}

impl terminal_output::HostTerminalOutput for Sandbox {
    fn drop(&mut self, t: Resource<TerminalOutput>) -> wasmtime::Result<()> {
        self.remove(t.rep());
        Ok(())
    }
}

impl terminal_stdin::Host for Sandbox {
    fn get_terminal_stdin(&mut self) -> wasmtime::Result<Option<Resource<TerminalInput>>> {
        Ok(None)
    }
}

impl terminal_stdout::Host for Sandbox {
    fn get_terminal_stdout(&mut self) -> wasmtime::Result<Option<Resource<TerminalOutput>>> {
        Ok(None)
    }
}

impl terminal_stderr::Host for Sandbox {
    fn get_terminal_stderr(&mut self) -> wasmtime::Result<Option<Resource<TerminalOutput>>> {
        Ok(None)
    }
}

impl monotonic_clock::Host for Sandbox {
    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(self.mono_ns)
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        Ok(1)
    }

    fn subscribe_instant(&mut self, when: u64) -> wasmtime::Result<Resource<Pollable>> {
        self.pollable_at(when)
    }

    fn subscribe_duration(&mut self, when: u64) -> wasmtime::Result<Resource<Pollable>> {
        self.pollable_at(self.mono_ns.saturating_add(when))
    }
}

impl wall_clock::Host for Sandbox {
    /// The decision's virtual time plus what the guest waited (virtually).
    fn now(&mut self) -> wasmtime::Result<wall_clock::Datetime> {
        let ns = self.wall_ns.saturating_add(self.mono_ns);
        Ok(wall_clock::Datetime {
            seconds: ns / 1_000_000_000,
            nanoseconds: u32::try_from(ns % 1_000_000_000).unwrap_or(0),
        })
    }

    fn resolution(&mut self) -> wasmtime::Result<wall_clock::Datetime> {
        Ok(wall_clock::Datetime {
            seconds: 0,
            nanoseconds: 1_000_000,
        })
    }
}

impl random::Host for Sandbox {
    fn get_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        self.random_bytes(len)
    }

    fn get_random_u64(&mut self) -> wasmtime::Result<u64> {
        Ok(self.next_u64())
    }
}

impl insecure::Host for Sandbox {
    fn get_insecure_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        self.random_bytes(len)
    }

    fn get_insecure_random_u64(&mut self) -> wasmtime::Result<u64> {
        Ok(self.next_u64())
    }
}

impl insecure_seed::Host for Sandbox {
    fn insecure_seed(&mut self) -> wasmtime::Result<(u64, u64)> {
        Ok((self.next_u64(), self.next_u64()))
    }
}
