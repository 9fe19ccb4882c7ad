"""The nightly segment report: `data` turns the output tables (as pandas frames) into what each section
shows, `page` draws it as one self-contained HTML file. The I/O is `jobs.report`'s."""
