//! Command-line walking shared by the benchmark binaries: options with values, numbers,
//! and one way to fail (the binary's own `die`, which prints its usage).

use std::str::FromStr;

/// The process arguments, consumed option by option.
pub struct Cli {
    args: Vec<String>,
    next: usize,
    die: fn(&str) -> !,
}

impl Cli {
    pub fn from_env(die: fn(&str) -> !) -> Self {
        Self {
            args: std::env::args().skip(1).collect(),
            next: 0,
            die,
        }
    }

    /// The next option, or `None` when all are read.
    pub fn next_opt(&mut self) -> Option<String> {
        let a = self.args.get(self.next).cloned();
        self.next += 1;
        a
    }

    /// The value following option `name`.
    pub fn value(&mut self, name: &str) -> String {
        match self.next_opt() {
            Some(v) => v,
            None => (self.die)(&format!("{name} needs a value")),
        }
    }

    /// The value following option `name`, as a number.
    pub fn num<T: FromStr>(&mut self, name: &str) -> T {
        let v = self.value(name);
        self.parse(&v, name)
    }

    /// `s` (a value of option `name`) as a number.
    pub fn parse<T: FromStr>(&self, s: &str, name: &str) -> T {
        s.parse()
            .unwrap_or_else(|_| (self.die)(&format!("{name}: '{s}' is not a number")))
    }
}
