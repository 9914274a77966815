//! Why a job definition was refused, and what to change.
//!
//! Every message names the cause and the fix, because it goes back to the
//! person who wrote the definition unchanged. [`Error::kind`] tells callers
//! which part of the definition is at fault, so they can pick the protocol
//! error code without matching on each variant.

/// The field list quoted in messages about unknown or malformed fields.
const JOB_FIELDS: &str = "name, workspace, description, sql, kql, notebook, parameters, \
                          schedule, size, vcores, timeout, retry, enabled";

/// Which part of a job definition an [`Error`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The job as a whole: its shape, name, workspace, work, timeout or retry.
    InvalidJob,
    /// The `schedule` object.
    InvalidSchedule,
    /// The `notebook` document.
    InvalidNotebook,
    /// A parameter: its name, its value or a placeholder that has none.
    InvalidParameter,
}

/// A job definition, or a part of one, that cannot be accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The JSON does not have the shape of a job definition.
    #[error("the job definition does not parse: {message}; fix that field (the fields are {JOB_FIELDS})")]
    Malformed {
        /// What the JSON decoder reported.
        message: String,
    },
    /// The job name breaks the naming rules.
    #[error(
        "job name {name:?} is not 1 to 128 letters, digits, spaces, '_', '-' or '.' without \
         leading or trailing spaces; rename it, e.g. \"nightly-load\""
    )]
    JobName {
        /// The name as given.
        name: String,
    },
    /// No workspace was named.
    #[error("workspace is empty; name the workspace the job runs in, e.g. \"security\"")]
    EmptyWorkspace,
    /// Neither a SQL script, a KQL query nor a notebook was given.
    #[error("the job has none of \"sql\", \"kql\" and \"notebook\"; give exactly one of them")]
    NoWork,
    /// More than one of a SQL script, a KQL query and a notebook was given.
    #[error(
        "the job has more than one of \"sql\", \"kql\" and \"notebook\"; keep one of them (in a \
         PATCH, set the others to null)"
    )]
    BothWork,
    /// The KQL query is empty.
    #[error("\"kql\" has no query, only whitespace or comments; write a KQL query")]
    BlankKql,
    /// A KQL job declared parameters, which its query cannot use.
    #[error(
        "a KQL job takes no parameters (KQL has no `$name` placeholders), but it declares: \
         {names}; remove \"parameters\", and write the values into the query as `let` \
         statements"
    )]
    KqlParameters {
        /// The declared names, comma separated.
        names: String,
    },
    /// The SQL script holds no statement.
    #[error(
        "\"sql\" has no statement, only whitespace or comments; write at least one SQL statement"
    )]
    BlankSql,
    /// A zero timeout would stop every run at once.
    #[error(
        "timeout \"0s\" would stop every run at once; give a positive duration such as \"30m\", \
         or leave timeout out for no limit"
    )]
    ZeroTimeout,
    /// `retry.attempts` is outside its range.
    #[error(
        "retry.attempts {attempts} is outside 1..=10 (the total number of tries, 1 = no retry); \
         pick a number in that range"
    )]
    RetryAttempts {
        /// The number given.
        attempts: u32,
    },
    /// A PATCH body that is not a JSON object.
    #[error("a job PATCH body must be a JSON object of the fields to change; send e.g. {{\"enabled\": false}}")]
    PatchNotObject,
    /// A PATCH names a field jobs do not have.
    #[error("the PATCH names unknown field {field:?}; the fields are {JOB_FIELDS}")]
    PatchUnknownField {
        /// The field as given.
        field: String,
    },
    /// A PATCH resets a required field.
    #[error("the PATCH sets {field:?} to null, but a job must have one; give a new value instead")]
    PatchRequired {
        /// The required field.
        field: String,
    },

    /// The schedule JSON does not have the shape of a schedule.
    #[error(
        "schedule does not parse: {message}; a schedule is an object such as \
         {{\"daily\": \"02:30\", \"timezone\": \"Europe/Berlin\"}}"
    )]
    ScheduleShape {
        /// What the JSON decoder reported.
        message: String,
    },
    /// The schedule names no kind of recurrence.
    #[error(
        "schedule names no kind; give exactly one of every, daily, weekly, monthly or cron, \
         e.g. {{\"daily\": \"02:30\"}}"
    )]
    NoScheduleKind,
    /// The schedule names more than one kind of recurrence.
    #[error(
        "schedule names several kinds ({kinds}); keep exactly one of every, daily, weekly, \
         monthly or cron"
    )]
    ScheduleKinds {
        /// The kinds given, comma separated.
        kinds: String,
    },
    /// `schedule.every` is not a duration.
    #[error("schedule.every {value:?} is not a duration; write e.g. \"15m\" or \"1h 30m\"")]
    Every {
        /// The text given.
        value: String,
    },
    /// `schedule.every` is zero.
    #[error("schedule.every is zero; give a positive duration such as \"15m\"")]
    ZeroInterval,
    /// `schedule.start` or `schedule.end` is not an RFC 3339 time.
    #[error(
        "schedule.{field} {value:?} is not an RFC 3339 time; write e.g. \"2026-12-01T00:00:00Z\""
    )]
    Timestamp {
        /// `start` or `end`.
        field: &'static str,
        /// The text given.
        value: String,
    },
    /// The time zone is not in the IANA database.
    #[error(
        "schedule.timezone {timezone:?} is not an IANA time zone; write e.g. \"Europe/Berlin\" \
         or \"UTC\""
    )]
    Timezone {
        /// The name given.
        timezone: String,
    },
    /// A time of day that is not `HH:MM`.
    #[error(
        "schedule.{field} {value:?} is not a time of day HH:MM (24-hour); write e.g. \"02:30\""
    )]
    TimeOfDay {
        /// Where the time was given, e.g. `daily` or `weekly.at`.
        field: &'static str,
        /// The text given.
        value: String,
    },
    /// A weekly schedule names something that is not a day of the week.
    #[error(
        "schedule.weekly.days has {value:?}, which is not a day of the week; use mon, tue, wed, \
         thu, fri, sat or sun"
    )]
    Weekday {
        /// The text given.
        value: String,
    },
    /// A weekly schedule with no days.
    #[error("schedule.weekly.days is empty; list at least one day, e.g. [\"mon\"]")]
    NoWeekdays,
    /// A monthly day outside 1..=31.
    #[error(
        "schedule.monthly.day {day} is not a day of the month; use 1 to 31 (months without that \
         day fire on their last day)"
    )]
    MonthDay {
        /// The day given.
        day: u32,
    },
    /// A cron expression that does not parse.
    #[error(
        "schedule.cron {expr:?} does not parse ({reason}); write 5 fields \"minute hour \
         day-of-month month day-of-week\", or 6 with seconds first, e.g. \"0 */2 * * *\""
    )]
    Cron {
        /// The expression given.
        expr: String,
        /// What the cron parser reported.
        reason: String,
    },
    /// A cron expression that parses but matches no date.
    #[error(
        "schedule.cron {expr:?} never fires, no date matches it; check its day-of-month and \
         month fields (February has no 30th)"
    )]
    CronNeverFires {
        /// The expression given.
        expr: String,
    },
    /// `end` is not after `start`.
    #[error("schedule.end {end} is not after schedule.start {start}; move end later or drop it")]
    Bounds {
        /// The start, RFC 3339.
        start: String,
        /// The end, RFC 3339.
        end: String,
    },
    /// Fires closer together than the cluster allows.
    #[error(
        "schedule fires at {first} and again at {second}, {gap} apart, more often than the \
         minimum interval of {min}; space its fires at least {min} apart"
    )]
    TooFrequent {
        /// One fire, RFC 3339.
        first: String,
        /// The fire after it, RFC 3339.
        second: String,
        /// The time between them.
        gap: String,
        /// The minimum interval.
        min: String,
    },
    /// A fire time beyond what the calendar arithmetic can represent.
    #[error(
        "schedule has no representable fire time after {after}; keep start, end and every \
         within the years 1 to 9999"
    )]
    OutOfRange {
        /// Where the search started, RFC 3339.
        after: String,
    },

    /// The notebook is not nbformat 4.
    #[error(
        "notebook has nbformat {found}, but jobs run nbformat 4; save it from a current Jupyter \
         or convert it with `jupyter nbconvert --to notebook`"
    )]
    NotNbformat4 {
        /// The version found, or `missing`.
        found: String,
    },
    /// The notebook is not structured as a Jupyter document.
    #[error("notebook is not a Jupyter document: {message}; export it from Jupyter as .ipynb")]
    NotebookShape {
        /// What is wrong.
        message: String,
    },
    /// The notebook has nothing to run.
    #[error("notebook has no code cell with code in it; add a code cell for the job to run")]
    NoCodeCell,
    /// The notebook's kernel is not one jobs can run.
    #[error(
        "notebook kernel {kernel:?} is not supported; set metadata.kernelspec.name to \
         \"tarn-sql\", \"tarn-kql\" or \"tarn-python\" (\"python3\" runs as tarn-python)"
    )]
    Kernel {
        /// The kernel named by the notebook.
        kernel: String,
    },
    /// A cell waits for someone to type or click, which never happens in a job.
    #[error(
        "notebook cell {cell} line {line} {what}, and a scheduled run has no one to answer; \
         pass the value as a parameter (a cell tagged \"parameters\") instead"
    )]
    Interactive {
        /// The cell's position in the document's `cells` array.
        cell: usize,
        /// The 1-based line within the cell.
        line: usize,
        /// What the line does.
        what: String,
    },
    /// A parameters-cell line that is not `name = literal`.
    #[error(
        "notebook parameters cell {cell} line {line} {text:?} is not `name = literal`; write one \
         assignment per line, e.g. `day = '2026-01-01'` (literals: numbers, quoted strings, \
         True/False, None)"
    )]
    ParametersLine {
        /// The cell's position in the document's `cells` array.
        cell: usize,
        /// The 1-based line within the cell.
        line: usize,
        /// The line as written.
        text: String,
    },
    /// A parameters cell assigns one name twice.
    #[error(
        "notebook parameters cell {cell} line {line} assigns {name:?} a second time; keep one \
         assignment"
    )]
    DuplicateParameter {
        /// The cell's position in the document's `cells` array.
        cell: usize,
        /// The 1-based line of the second assignment.
        line: usize,
        /// The name assigned twice.
        name: String,
    },

    /// A parameter name that is not an identifier.
    #[error(
        "parameter name {name:?} is not an identifier; use letters, digits and '_', not starting \
         with a digit, e.g. \"min_fails\""
    )]
    ParamName {
        /// The name given.
        name: String,
    },
    /// A parameter value of a JSON type parameters cannot hold.
    #[error(
        "parameter {name:?} is {found}; parameter values are null, true/false, numbers or \
         strings (pass a list as a string, e.g. \"a,b\")"
    )]
    ParamType {
        /// The parameter's name.
        name: String,
        /// What was given instead, e.g. `an array`.
        found: &'static str,
    },
    /// An override names a parameter the job does not declare.
    #[error(
        "parameter {name:?} is not declared; declared: {declared}; fix the name, or declare it \
         with a default in the job"
    )]
    Undeclared {
        /// The name given.
        name: String,
        /// The declared names, comma separated, or `none`.
        declared: String,
    },
    /// The SQL uses a placeholder no parameter gives a value for.
    #[error(
        "the SQL uses placeholder ${name} but no parameter {name:?} is declared (declared: \
         {declared}); add it to \"parameters\" with a default"
    )]
    Unbound {
        /// The placeholder's name, without `$`.
        name: String,
        /// The declared names, comma separated, or `none`.
        declared: String,
    },
}

impl Error {
    /// Which part of the definition is at fault, for choosing a protocol code.
    pub fn kind(&self) -> Kind {
        match self {
            Error::Malformed { .. }
            | Error::JobName { .. }
            | Error::EmptyWorkspace
            | Error::NoWork
            | Error::BothWork
            | Error::BlankSql
            | Error::BlankKql
            | Error::ZeroTimeout
            | Error::RetryAttempts { .. }
            | Error::PatchNotObject
            | Error::PatchUnknownField { .. }
            | Error::PatchRequired { .. } => Kind::InvalidJob,
            Error::ScheduleShape { .. }
            | Error::NoScheduleKind
            | Error::ScheduleKinds { .. }
            | Error::Every { .. }
            | Error::ZeroInterval
            | Error::Timestamp { .. }
            | Error::Timezone { .. }
            | Error::TimeOfDay { .. }
            | Error::Weekday { .. }
            | Error::NoWeekdays
            | Error::MonthDay { .. }
            | Error::Cron { .. }
            | Error::CronNeverFires { .. }
            | Error::Bounds { .. }
            | Error::TooFrequent { .. }
            | Error::OutOfRange { .. } => Kind::InvalidSchedule,
            Error::NotNbformat4 { .. }
            | Error::NotebookShape { .. }
            | Error::NoCodeCell
            | Error::Kernel { .. }
            | Error::Interactive { .. }
            | Error::ParametersLine { .. }
            | Error::DuplicateParameter { .. } => Kind::InvalidNotebook,
            Error::ParamName { .. }
            | Error::ParamType { .. }
            | Error::Undeclared { .. }
            | Error::KqlParameters { .. }
            | Error::Unbound { .. } => Kind::InvalidParameter,
        }
    }
}

/// Lists names for a message, so an empty list still reads as a sentence.
pub(crate) fn name_list<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    let joined = names
        .into_iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if joined.is_empty() {
        "none".to_owned()
    } else {
        joined
    }
}
