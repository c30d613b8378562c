import Foundation
import QMambaCLI

exit(QMambaCLI.main(Array(CommandLine.arguments.dropFirst())))
