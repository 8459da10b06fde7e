// re2_ref: the reference for test_re_differential.py, Google's RE2 itself (Debian's
// libre2-dev), answering the same batch protocol as `tests/unit/test_re --batch`: per
// input line "hex(pattern) hex(input) hex(rewrite)", one output line
//   ERR <message>                                        the pattern does not compile
//   FULL <0|1> SEARCH <spans of up to 10 groups | none> [REPL <count> <hex(output)>]
// REPL is there when RE2::CheckRewriteString accepts the rewrite. Test-only; built by
// the test with g++ -lre2.
#include <re2/re2.h>

#include <cstdio>
#include <iostream>
#include <string>

static std::string unhex(const std::string &h)
{
	std::string out;
	for (size_t i = 0; i + 1 < h.size(); i += 2)
		out += (char)std::stoi(h.substr(i, 2), nullptr, 16);
	return out;
}

int main()
{
	std::string line;

	while (std::getline(std::cin, line)) {
		size_t a = line.find(' '), b = line.find(' ', a + 1);
		std::string pat = unhex(line.substr(0, a));
		std::string in = unhex(line.substr(a + 1, b - a - 1));
		std::string rw = unhex(line.substr(b + 1));
		RE2 re(pat, RE2::Quiet);

		if (!re.ok()) {
			std::cout << "ERR " << re.error() << "\n" << std::flush;
			continue;
		}
		int n = re.NumberOfCapturingGroups() + 1;
		if (n > 10)
			n = 10;
		re2::StringPiece sub[10];
		bool full = re.Match(in, 0, in.size(), RE2::ANCHOR_BOTH, nullptr, 0);
		std::cout << "FULL " << (full ? 1 : 0) << " SEARCH";
		if (re.Match(in, 0, in.size(), RE2::UNANCHORED, sub, n)) {
			for (int i = 0; i < n; i++) {
				if (sub[i].data() == nullptr)
					std::cout << " -1 -1";
				else
					std::cout << " " << (sub[i].data() - in.data()) << " "
					          << (sub[i].data() - in.data() + sub[i].size());
			}
		} else {
			std::cout << " none";
		}
		std::string err;
		if (re.CheckRewriteString(rw, &err)) {
			std::string s = in;
			int count = RE2::GlobalReplace(&s, re, rw);
			std::cout << " REPL " << count << " ";
			for (unsigned char c : s)
				std::printf("%02x", c), std::fflush(stdout);
		}
		std::cout << "\n" << std::flush;
	}
	return 0;
}
